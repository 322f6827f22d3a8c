/** The node's dashboard (page, JSON APIs, /metrics) and its Prometheus metrics. */
export { startDashboard, type Dashboard, type DashboardOptions } from './server';
export { attachMetrics, type AttachedMetrics } from '../metrics';
export type { RecentEntry } from './recent';
export type { ExpertUsage } from './usage';
export type { ConditionSnapshot, MachineCondition, ConditionPoint } from './condition';
export type { Spectrum } from './spectrum';
