/** The public surface of sgmoe-edge. Each folder re-exports its own small API here. */
export { SgmoeError, errorCode, errorMessage } from './errors';
export { createLogger, silentLogger, type Logger } from './log';
export * from './model';
export * from './engine';
export * from './ingest';
export * from './audit';
export * from './protocol';
export * from './transport';
export * from './fleet';
export * from './node';
