import type { CommandHandlers } from '../transport/commands';
import type { EdgeNode } from './edge-node';

/** The node's own MQTT commands; `update` and `rollback` come from the fleet agent when one is configured. */
export function nodeCommands(node: EdgeNode, config: () => unknown): Pick<CommandHandlers, 'ping' | 'getConfig' | 'setThreshold' | 'setFalseAlarmRate'> {
  return {
    ping: () => ({ pong: true, model: node.engine.model, uptimeS: node.uptimeS }),
    getConfig: () => ({ config: config(), settings: node.engine.getSettings(), anomalyThreshold: node.engine.task.currentThreshold, falseAlarmRate: node.engine.task.currentFalseAlarmRate, model: node.engine.model }),
    setThreshold: (threshold, origin) => node.setThreshold(threshold, origin),
    setFalseAlarmRate: (rate, origin) => node.setFalseAlarmRate(rate, origin),
  };
}
