export { EdgeNode, type EdgeNodeParts, type NodeSource, type NodeSnapshot, type SourceAccount, type NodeEvents } from './edge-node';
export { createEdgeNode, resolveProfile, type CreateNodeOptions, type CreatedNode } from './create';
export { nodeConfigSchema, parseNodeConfig, readConfigFile, type NodeConfig, type NodeConfigInput, type SourceConfig } from './config';
export { MicroBatcher } from './batcher';
export * from './dashboard';
