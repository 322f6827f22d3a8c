import type { AuditEvent } from '../../audit/events';
import type { SgmoeError } from '../../errors';

/** Where a refusal came from and what it asked for. */
export interface RefusedRequest {
  remote: string | undefined;
  method: string | undefined;
  path: string;
}

/** A path is attacker-chosen text: enough of it to see what was probed, never a long string in every event. */
const MAX_PATH = 200;

/**
 * Writes a `dashboard_refused` event for dashboard requests refused for want of the operator token (no token or a
 * wrong one, on a read or a verdict), at most one per `intervalMs`: whoever probes the port must not be able to fill
 * the audit log (or the log lines written in its place). An event written after a quiet spell counts the refusals
 * folded into it (`details.suppressed`), so none goes unaccounted.
 */
export class RefusalReporter {
  private lastWritten = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly write: (event: AuditEvent) => void,
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  refused(error: SgmoeError, request: RefusedRequest): void {
    const ts = this.now();
    if (ts - this.lastWritten < this.intervalMs) {
      this.suppressed++;
      return;
    }
    const remote = request.remote ?? null;
    const path = request.path.slice(0, MAX_PATH);
    this.write({
      kind: 'dashboard_refused',
      ts,
      message: `dashboard request ${request.method} ${path} refused from ${remote ?? 'an unknown address'}: ${error.message}`,
      details: { code: error.code, reason: error.details?.reason, method: request.method ?? null, path, remote, suppressed: this.suppressed },
    });
    this.lastWritten = ts;
    this.suppressed = 0;
  }
}
