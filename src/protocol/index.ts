/**
 * The wire protocol between devices and operators: topics, payload schemas, the command envelope and the update
 * request. The device side (transport, fleet agent) and the operator side (publish, rollback, `sgmoe cmd`) both
 * build and check messages with these, so neither trusts the other's JSON without a schema.
 */
export { topicsFor, DEFAULT_TOPIC_PREFIX, type Topics, type DeviceAddress } from './topics';
export * from './payloads';
export * from './signature';
export * from './update';
export * from './command';
