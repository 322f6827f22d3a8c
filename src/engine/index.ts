export type { Decision, StageTimingsUs } from './decision';
