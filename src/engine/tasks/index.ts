import { SgmoeError, type ErrorCode } from '../../errors';
import type { Manifest } from '../../model/manifest';
import { AnomalyTask } from './anomaly';
import { ClassificationTask } from './classification';
import { ConditionTask } from './condition';
import type { Task } from './task';

/** Every task the engine runs, by the manifest's `task`: adding one is one module and one entry here. */
const TASKS: Record<Manifest['task'], (manifest: Manifest) => Task> = {
  classification: (m) => new ClassificationTask(m),
  condition: (m) => new ConditionTask(m),
  anomaly: (m) => new AnomalyTask(m),
};

export function createTask(manifest: Manifest): Task {
  return TASKS[manifest.task](manifest);
}

/**
 * Moves an anomaly package's threshold to flag this share of good frames and returns it; a package of another task
 * has no such threshold, so `where` (the setting asked for) is refused with `code`.
 */
export function setFalseAlarmRate(task: Task, rate: number, where: string, code: ErrorCode): number {
  if (!task.setFalseAlarmRate) throw new SgmoeError(code, `${where}: expected a package of task anomaly, found task ${task.name}`);
  return task.setFalseAlarmRate(rate);
}

export { AnomalyTask, describeAnomalyExit, thresholdForFalseAlarmRate, type AnomalyFields } from './anomaly';
export type { BaseVerdict, BranchOutputs, Task, TaskResult } from './task';
