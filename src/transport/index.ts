/** MQTT transport: config, topics, payload schemas, persistent outbox, client, commands, embedded broker. */
export { transportConfigSchema, parseTransportConfig, clientIdOf, connectOptionsFor, type TransportConfig, type TransportConfigInput, type OutboxConfig } from './config';
export { topicsFor, type Topics } from './topics';
export * from './payloads';
export { Outbox, type OutboxKind, type OutboxMessage, type OutboxEntry, type OutboxStats, type OutboxOptions } from './outbox';
export type { OutboxRecovery } from './outbox-file';
export { CommandDispatcher, COMMAND_NAMES, type CommandHandlers, type CommandDispatcherOptions } from './commands';
export { MqttTransport, describeConnectionError, type MqttTransportOptions, type TransportState, type TransportStats } from './client';
export { EmbeddedBroker, type EmbeddedBrokerOptions } from './broker';
