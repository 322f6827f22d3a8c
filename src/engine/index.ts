export { decisionEssentials, type Decision, type StageTimingsUs } from './decision';
export { Engine, type EngineOptions, type RuntimeSettings, type PartOutputs, type EngineStats } from './engine';
export { softmax, argmax, topKIndices, baseStage, routeExperts, ensemble, type Routing } from './decide';
export { ExpertCache, type ExpertCacheCounters } from './expert-cache';
export {
  deviceProfileSchema,
  parseDeviceProfile,
  loadDeviceProfile,
  listDeviceProfiles,
  pickProfile,
  DEVICES_DIR,
  type DeviceProfile,
  type ProviderSpec,
  type ProviderName,
  type HostFacts,
} from './profile';
export { openSession, ortSessionFactory, tensorrtEnvironment, type Placement, type ProviderAttempt, type SessionFactory } from './providers';
export { detectHost } from './host';
export { runDoctor, type DoctorReport } from './doctor';
export { runSelftest, type SelftestReport, type SelftestFailure } from './selftest-run';
export { verifyPackage, type VerifyReport, type VerifyCheck } from './verify';
