import type { AuditEvent } from '../../audit/events';
import type { SgmoeError } from '../../errors';

/**
 * Writes a `review_refused` audit event for refused review writes (no or a wrong operator token), at most one per
 * `intervalMs`: whoever probes the port must not be able to fill the audit log. An event written after a quiet
 * spell counts the refusals folded into it (`details.suppressed`), so none goes unaccounted.
 */
export class RefusalReporter {
  private lastWritten = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly write: (event: AuditEvent) => void,
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  refused(error: SgmoeError, remote: string | undefined): void {
    const ts = this.now();
    if (ts - this.lastWritten < this.intervalMs) {
      this.suppressed++;
      return;
    }
    this.write({
      kind: 'review_refused',
      ts,
      message: `review refused from ${remote ?? 'an unknown address'}: ${error.message}`,
      details: { code: error.code, reason: error.details?.reason, remote: remote ?? null, suppressed: this.suppressed },
    });
    this.lastWritten = ts;
    this.suppressed = 0;
  }
}
