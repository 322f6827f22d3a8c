import { errorMessage } from '../errors';
import type { Logger } from '../log';

/** Something the node opened and closes on stop (a database, a broker, a lock). */
export type Closer = () => Promise<void> | void;

/**
 * Runs every closer in order, whatever an earlier one throws: one that fails must not keep the locks after it (the
 * next node in this process would be refused with E_STORE_IN_USE). Each failure is logged; the first is thrown.
 */
export async function closeAll(closers: readonly Closer[], logger: Logger): Promise<void> {
  const failures: unknown[] = [];
  for (const close of closers) {
    try {
      await close();
    } catch (err) {
      failures.push(err);
      logger.error({ err: errorMessage(err) }, 'a part of the node failed to close');
    }
  }
  if (failures.length > 0) throw failures[0];
}
