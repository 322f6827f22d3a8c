import type { MqttClient } from 'mqtt';

/** A command published at QoS 1 that the operator can take back while mqtt.js still holds it. */
export interface OutgoingCommand {
  /** Resolves once the broker acknowledged it. */
  acked: Promise<void>;
  /**
   * Once the operator gave up on it: a command the broker has not acknowledged leaves mqtt.js's outgoing store, so a
   * reconnect does not send it late. One already handed to the broker is the device's deadline check's to refuse.
   */
  withdraw(): void;
}

/**
 * While the broker is away (or before it acknowledged), mqtt.js keeps a QoS 1 publish in its outgoing store and sends
 * it again on reconnect, however late: after the command's deadline, when the operator was told it failed.
 */
export function publishCommand(client: MqttClient, topic: string, payload: string): OutgoingCommand {
  let settled = false;
  let callback!: (err?: Error) => void;
  const acked = new Promise<void>((resolve, reject) => {
    callback = (err) => {
      settled = true;
      if (err) reject(err);
      else resolve();
    };
  });
  void acked.catch(() => undefined); // a withdrawn command fails its acknowledgement: nobody waits for it any more
  client.publish(topic, payload, { qos: 1 }, callback);
  return {
    acked,
    withdraw: () => {
      if (settled) return;
      // Found by its callback: mqtt.js gives the message id of a publish to nobody else.
      const held = Object.entries(client.outgoing).find(([, entry]) => entry.cb === callback);
      if (held) client.removeOutgoingMessage(Number(held[0]));
    },
  };
}
