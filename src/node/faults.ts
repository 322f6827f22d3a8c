/**
 * Conditions on the device itself that an operator must fix (a full disk, an ROI outside the camera's frame),
 * as opposed to the routing alarms the audit log raises about the model's behaviour.
 */
export interface NodeFault {
  /** E_STORAGE_UNWRITABLE, E_FRAME_ROI... */
  code: string;
  state: 'raised' | 'cleared';
  message: string;
  /** The source concerned, for a source's fault. */
  source?: string;
  /** When it was raised (ISO 8601). */
  since: string;
}

type Raised = Omit<NodeFault, 'state' | 'since'>;

export const STORAGE_FAULT = 'storage';
export const DASHBOARD_FAULT = 'dashboard';
export const BROKER_FAULT = 'broker';
export const roiFaultKey = (source: string) => `roi:${source}`;

/** The disk alarm: a commit of audit rows or MQTT results failed (a full disk, an I/O error). */
export function storageFault(failure: { code: string; message: string }): Raised {
  return {
    code: 'E_STORAGE_UNWRITABLE',
    message:
      `expected to commit frames to the audit log and the outbox, found ${failure.code}: ${failure.message}. ` +
      'Frames of hot folders stay in their inbox (counted as pending) and are retried until space returns; live frames are decided and counted as unaudited',
  };
}

/** The dashboard could not start (its port taken, a token too short): the node runs on, and must say so where it reports. */
export function dashboardFault(error: { code: string; message: string }): Raised {
  return { code: error.code, message: `dashboard not started: ${error.message}; the node runs without its dashboard and /metrics until restarted` };
}

/**
 * The broker refuses the node (bad credentials, a failed TLS handshake) after it started: retrying cannot fix it, so
 * an operator must hear of it; cleared by the next connection the broker accepts.
 */
export function brokerFault(error: { code: string; message: string }): Raised {
  return {
    code: error.code,
    message:
      `expected the broker to accept the node, found ${error.code}: ${error.message}. ` +
      'Results, health and alarms wait in the outbox (beyond mqtt.outbox.maxResults the oldest results, rejections and health reports are dropped and counted) and the node keeps trying',
  };
}

/** A misplaced ROI rejects every frame of its source: an operator must hear of it once, not read it per frame. */
export function roiFault(source: string, error: { message: string }): Raised {
  return { code: 'E_FRAME_ROI', source, message: `source ${source}: ${error.message}; every frame of it is rejected until the ROI or the camera is fixed` };
}

/** The faults raised now, one per key; raise and clear report whether anything changed. */
export class Faults {
  private readonly raised = new Map<string, NodeFault>();

  raise(key: string, fault: Raised): NodeFault | null {
    if (this.raised.has(key)) return null;
    const raised: NodeFault = { ...fault, state: 'raised', since: new Date().toISOString() };
    this.raised.set(key, raised);
    return raised;
  }

  clear(key: string, message: string): NodeFault | null {
    const fault = this.raised.get(key);
    if (!fault) return null;
    this.raised.delete(key);
    return { ...fault, state: 'cleared', message };
  }

  active(): NodeFault[] {
    return [...this.raised.values()];
  }
}
