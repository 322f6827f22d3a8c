/** MQTT transport: config, persistent outbox, client, commands, embedded broker (topics and payloads: src/protocol). */
export { transportConfigSchema, parseTransportConfig, clientIdOf, connectOptionsFor, type TransportConfig, type TransportConfigInput, type OutboxConfig } from './config';
export { Outbox, type OutboxKind, type OutboxMessage, type OutboxEntry, type OutboxStats, type OutboxOptions } from './outbox';
export type { OutboxRecovery } from './outbox-file';
export { CommandDispatcher, type CommandHandlers, type CommandOrigin, type CommandDispatcherOptions, type RefusedCommand } from './commands';
export { CommandAuthoriser, type CommandAuthoriserOptions, type Authorised } from './authorise';
export { MqttTransport, describeConnectionError, type MqttTransportOptions, type TransportState, type TransportStats } from './client';
export { EmbeddedBroker, type EmbeddedBrokerOptions } from './broker';
