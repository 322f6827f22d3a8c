/** Fleet updates: signed packages for the operator, the update agent for the device. */
export { writeFileAtomic } from './atomic';
export { compareVersions } from './semver';
export { generateSigningKey, keyIdOf, readPrivateKey, readPublicKey, parsePublicKey, TrustedKeys, type GeneratedKey } from './keys';
export {
  signPackage,
  writeSignature,
  readSignature,
  parseSignature,
  checkSignature,
  verifySignedPackage,
} from './signature';
export { packPackage, readTarManifest, PACK_MTIME, type PackResult } from './pack';
export { publishChunks, clearChunks, fetchChunks, DEFAULT_CHUNK_BYTES } from './chunks';
export { publishUpdate, type PublishOptions, type PublishReport, type DeviceOutcome } from './publish';
export { unpackPackage, type UnpackLimits, type UnpackResult } from './unpack';
export { downloadFile, type DownloadOptions, type DownloadResult } from './download';
export { servePackages, type PackageServer, type ServeOptions } from './serve';
export { PackageStore, packageId, updateStateSchema, type UpdateState, type Pointer, type Recovery } from './store';
export type { EngineHost, HealthProbe, HealthSample } from './host';
export { judgeHealth, watchHealth, DEFAULT_HEALTH_WATCH, type HealthWatchOptions, type HealthVerdict } from './health-watch';
export {
  UpdateAgent,
  DEFAULT_UPDATE_LIMITS,
  type UpdateAgentOptions,
  type UpdateLimits,
  type UpdateEvent,
  type UpdateResult,
  type RunningModel,
  type ChunkFetcher,
} from './agent';
export { verifySignedTar } from './verify-tar';
