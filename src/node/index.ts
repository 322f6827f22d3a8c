export { EdgeNode, type EdgeNodeParts, type NodeSource, type NodeEvents } from './edge-node';
export { type SetThresholdReply, type ThresholdOverride } from './threshold';
export { type NodeSnapshot, type SourceAccount } from './stats';
export { type NodeFault } from './faults';
export { createEdgeNode, resolveProfile, type CreateNodeOptions, type CreatedNode } from './create';
export { nodeConfigSchema, parseNodeConfig, readConfigFile, type NodeConfig, type NodeConfigInput, type SourceConfig } from './config';
export { MicroBatcher } from './batcher';
export * from './dashboard';
