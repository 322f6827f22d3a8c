export { AuditLog, type AuditLogParts, type OpenAuditLogOptions, type AuditHealthReport } from './audit-log';
export { AUDIT_EVENT_KINDS, EventLog, type AuditEvent, type AuditEventKind, type EventLogOptions } from './events';
export { exportDecisions, type ExportFormat } from './export';
export {
  RoutingHealth,
  DEFAULT_THRESHOLDS,
  type AlarmKind,
  type HealthAlarm,
  type HealthThresholds,
  type RoutingHealthOptions,
  type RoutingStats,
  type ScoreQuantile,
  type ScoreStats,
} from './health';
export { openAuditDb, openAuditDbReadOnly, type AuditRecovery, type OpenAuditDbOptions, type OpenedAuditDb } from './open';
export {
  alarmName,
  auditStats,
  countDecisions,
  iterateDecisions,
  listEvents,
  queryDecisions,
  whereClause,
  type AuditEventRow,
  type AuditFilter,
  type AuditStats,
  type AnomalyStats,
  type QueryOptions,
} from './query';
export {
  decidedRecord,
  droppedRecord,
  rejectedRecord,
  AUDIT_STATUSES,
  type AuditRecord,
  type AuditStatus,
  type DecidedRecord,
  type FailedRecord,
  type FrameInfo,
  type ModelRef,
} from './record';
export { Retention, type RetentionOptions, type RetentionPolicy } from './retention';
export type { AuditRow } from './rows';
export { SCHEMA_VERSION } from './schema';
export { AuditWriter, type AuditWriterCounters, type AuditWriterOptions, type CommittedBatch } from './writer';
export { exportReviewedDataset, type DatasetExport, type DatasetExportOptions } from './dataset';
export { FrameStore, framesDirOf, keepReviewedBytes, locateFrame, pinFrame, readScoreMap, type FrameStoreOptions, type KeepFrames, type ScoreMap } from './frame-store';
export {
  DEFAULT_DEFECT_KIND,
  REVIEW_VERDICTS,
  contradicted,
  latestVerdicts,
  shownKey,
  openReviewDb,
  recordReview,
  reviewInputSchema,
  standingReviews,
  type RecordedReview,
  type Review,
  type ReviewInput,
  type ReviewVerdict,
} from './review';
