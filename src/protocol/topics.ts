/** The topics of one device (docs/DESIGN.md, "MQTT"), all under one prefix. */
export interface Topics {
  prefix: string;
  result: string;
  status: string;
  health: string;
  alarm: string;
  /** Anomalous frames of an anomaly package (QoS 1, never dropped). */
  anomaly: string;
  /** Frames the node could not decide, with the reason (QoS 1, dropped with results when the outbox is full). */
  rejected: string;
  /** The subscription that receives every command. */
  commands: string;
  command(name: string): string;
  reply(name: string): string;
  /** The command name of a topic under `cmd/`, or null for replies and foreign topics. */
  commandName(topic: string): string | null;
}

const REPLY_SUFFIX = '/reply';

/** Where one device sits: `{site}` and `{device}` are substituted into the prefix (default `sgmoe/v1/{site}/{device}/`). */
export interface DeviceAddress {
  topicPrefix: string;
  site: string;
  device: string;
}

export const DEFAULT_TOPIC_PREFIX = 'sgmoe/v1/{site}/{device}/';

export function topicsFor(config: DeviceAddress): Topics {
  const prefix = config.topicPrefix.replaceAll('{site}', config.site).replaceAll('{device}', config.device);
  const cmd = `${prefix}cmd/`;
  return {
    prefix,
    result: `${prefix}result`,
    status: `${prefix}status`,
    health: `${prefix}health`,
    alarm: `${prefix}alarm`,
    anomaly: `${prefix}anomaly`,
    rejected: `${prefix}rejected`,
    commands: `${cmd}#`,
    command: (name) => `${cmd}${name}`,
    reply: (name) => `${cmd}${name}${REPLY_SUFFIX}`,
    commandName(topic) {
      // We subscribe to cmd/# and so also receive our own replies: those are not commands.
      if (!topic.startsWith(cmd) || topic.endsWith(REPLY_SUFFIX)) return null;
      const name = topic.slice(cmd.length);
      return name.length > 0 ? name : null;
    },
  };
}
