/** Frame ingest: sources selected by URI, a bounded queue per source, and sharp preprocessing to tensors. */
export type { Frame, RawPixels, PixelFormat } from './frame';
export type { ImageFormat } from './format';
export type { Fit, Rect, Size } from './geometry';
export { Preprocessor, DEFAULT_MAX_PIXELS, preprocessOptionsSchema, type PreprocessOptions, type PreprocessInput, type TensorBatch } from './preprocess';
export { BoundedQueue, type BackpressurePolicy } from './queue';
export type { BackoffOptions } from './retry';
export { BaseSource, type FrameSource, type FrameOutcome, type SourceKind, type SourceOptions, type SourceStats } from './source';
export { DirSource, type DirSourceOptions } from './sources/dir';
export { HttpSnapshotSource, type HttpSourceOptions } from './sources/http';
export { MjpegSource, type MjpegSourceOptions } from './sources/mjpeg';
export { MqttSource, topicMatches, type MqttSourceOptions } from './sources/mqtt';
export { PushSource, type PushInput } from './sources/push';
export { openSource, type OpenSourceOptions } from './open';
export { configureSharp, type SharpSettings } from './sharp-config';
