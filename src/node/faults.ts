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

/** The faults raised now, one per key; raise and clear report whether anything changed. */
export class Faults {
  private readonly raised = new Map<string, NodeFault>();

  raise(key: string, fault: Omit<NodeFault, 'state' | 'since'>): NodeFault | null {
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

  has(key: string): boolean {
    return this.raised.has(key);
  }

  active(): NodeFault[] {
    return [...this.raised.values()];
  }
}
