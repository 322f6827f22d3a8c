import { ConditionAlarms } from '../../src/maintenance/alarms';

describe('ConditionAlarms', () => {
  it('raises a condition change only after N windows in a row agree, and ignores a stray window', () => {
    const alarms = new ConditionAlarms(3, 'healthy');
    const seen = ['healthy', 'healthy', 'healthy', 'outer', 'healthy', 'outer', 'outer', 'outer', 'outer'].flatMap((c) => alarms.observe('m1', c, false));
    expect(seen.map((a) => [a.kind, a.details.from, a.details.to])).toEqual([['condition_change', 'healthy', 'outer']]);
  });

  it('keeps a condition alarm active until the machine is back to normal for N windows, and says since when', () => {
    let now = 1_000;
    const alarms = new ConditionAlarms(2, 'healthy', () => now);
    const observe = (c: string, unknown = false) => alarms.observe('m1', c, unknown);
    const twice = (c: string, unknown = false) => [observe(c, unknown), observe(c, unknown)].flat();
    twice('healthy');
    now = 2_000;
    expect(twice('inner').map((a) => [a.kind, a.state])).toEqual([['condition_change', 'raised']]);
    now = 3_000;
    twice('outer', true);
    // Out of normal since it first left it (inner), in an unknown regime since the outer windows.
    expect(alarms.active().map((a) => [a.kind, a.machine, a.since])).toEqual([['condition_change', 'm1', 2_000], ['unknown_regime', 'm1', 3_000]]);
    expect(alarms.active()[0].message).toContain('inner -> outer');
    const back = twice('healthy');
    expect(back.map((a) => [a.kind, a.state, a.details.to ?? null])).toEqual([['condition_change', 'cleared', 'healthy'], ['unknown_regime', 'cleared', null]]);
    expect(alarms.active()).toEqual([]);
  });

  it('reports a first condition other than the normal one, and keeps machines apart', () => {
    const alarms = new ConditionAlarms(2, 'healthy');
    const seen = [
      ...alarms.observe('m1', 'inner', false),
      ...alarms.observe('m2', 'healthy', false),
      ...alarms.observe('m1', 'inner', false),
      ...alarms.observe('m2', 'healthy', false),
    ];
    expect(seen.map((a) => [a.machine, a.details.from, a.details.to])).toEqual([['m1', null, 'inner']]);
  });

  it('raises the unknown-regime alarm after N flagged windows in a row and clears it after N unflagged ones', () => {
    const alarms = new ConditionAlarms(2);
    const flags = [true, false, true, true, true, false, true, false, false];
    const seen = flags.flatMap((f) => alarms.observe('m1', 'healthy', f)).filter((a) => a.kind === 'unknown_regime');
    expect(seen.map((a) => a.state)).toEqual(['raised', 'cleared']);
  });

  it("takes up the alarms an earlier run left open (from the audit log) and clears them when the machine is back", () => {
    const alarms = new ConditionAlarms(2, 'healthy');
    alarms.restore([
      { since: 500, message: 'm1: condition healthy -> inner (2 windows in a row)', details: { kind: 'condition_change', machine: 'm1', to: 'inner' } },
      { since: 600, message: 'm1: running in a regime no expert was trained on', details: { kind: 'unknown_regime', machine: 'm1' } },
      { since: 700, message: 'expert starved', details: { alarm: 'expert_starved' } },
    ]);
    expect(alarms.active().map((a) => [a.kind, a.since])).toEqual([['condition_change', 500], ['unknown_regime', 600]]);
    const back = [alarms.observe('m1', 'healthy', false), alarms.observe('m1', 'healthy', false)].flat();
    expect(back.map((a) => [a.kind, a.state, a.details.from ?? null])).toEqual([['condition_change', 'cleared', 'inner'], ['unknown_regime', 'cleared', null]]);
    expect(alarms.active()).toEqual([]);
  });
});
