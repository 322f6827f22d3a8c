import { join } from 'node:path';
import { AuditLog, auditStats, listEvents, openAuditDbReadOnly, RoutingHealth, type HealthAlarm } from '../../src/audit';
import { tempDir } from '../helpers/tmp';
import { decided, MODEL } from './records';

const tmp = tempDir('sgmoe-audit-health-');
afterAll(() => tmp.cleanup());

const UNIFORM = [0.25, 0.25, 0.25, 0.25];
const thresholds = { collapseShare: 0.6, starvedShare: 0.05, drift: 0.3, hysteresis: 0.05, minSamples: 100, earlyExit: { min: 0.1, max: 0.6 } };

/** A healthy stream: experts 0-3 in turn, every fifth decision an early exit. */
const healthy = (i: number) => (i % 5 === 4 ? null : i % 5);
/** A collapsed router: every routed decision goes to expert 0. */
const collapsed = (i: number) => (i % 5 === 4 ? null : 0);

function feed(health: RoutingHealth | AuditLog, from: number, count: number, expertOf: (i: number) => number | null): number {
  for (let i = from; i < from + count; i++) {
    const r = decided(i, expertOf(i));
    if (health instanceof AuditLog) health.record(r);
    else health.observe(r);
  }
  return from + count;
}

test('statistics: shares, normalised entropy, early-exit rate, gate confidence and drift, windowed and all time', () => {
  const health = new RoutingHealth({ experts: 4, expectedShare: UNIFORM, windowSize: 8, thresholds });
  // 8 decisions: experts 0,1,2 once each and 3 early exits, then 2 more to expert 0 (8 decisions in all)...
  for (const e of [0, 1, 2, null, null, null, 0, 0]) health.observe(decided(0, e));
  let { window, allTime } = health.snapshot();
  expect(window).toEqual(allTime);
  expect(window.decisions).toBe(8);
  expect(window.routed).toBe(5);
  expect(window.shares).toEqual([0.6, 0.2, 0.2, 0]);
  const h = -(0.6 * Math.log(0.6) + 2 * 0.2 * Math.log(0.2)) / Math.log(4);
  expect(window.entropy).toBeCloseTo(h, 12);
  expect(window.earlyExitRate).toBeCloseTo(3 / 8, 12);
  expect(window.meanGateConfidence).toBeCloseTo(0.9, 6);
  // TV = (|0.6-0.25| + 2|0.2-0.25| + |0-0.25|) / 2
  expect(window.drift).toBeCloseTo(0.35, 12);

  // ...then 8 decisions to expert 3: the window holds only those, all time holds all 16.
  for (let i = 0; i < 8; i++) health.observe(decided(i, 3));
  ({ window, allTime } = health.snapshot());
  expect(window).toMatchObject({ decisions: 8, routed: 8, shares: [0, 0, 0, 1], entropy: 0, earlyExitRate: 0, drift: 0.75 });
  expect(allTime).toMatchObject({ decisions: 16, routed: 13 });
  expect(allTime.shares[3]).toBeCloseTo(8 / 13, 12);
});

test('a collapse onto one expert raises collapse, starvation and drift once each; recovery clears each once', () => {
  const health = new RoutingHealth({ experts: 4, expectedShare: UNIFORM, windowSize: 400, thresholds });
  const alarms: HealthAlarm[] = [];
  health.onAlarm((a) => alarms.push(a));

  let i = feed(health, 0, 2000, healthy);
  expect(alarms).toEqual([]);

  i = feed(health, i, 2000, collapsed);
  expect(alarms.map((a) => `${a.kind}:${a.state}`).sort()).toEqual(['drift:raised', 'expert_starved:raised', 'router_collapse:raised']);
  const collapse = alarms.find((a) => a.kind === 'router_collapse')!;
  expect(collapse.experts).toEqual([0]);
  expect(collapse.value).toBeGreaterThan(0.6);
  expect(alarms.find((a) => a.kind === 'expert_starved')!.experts.length).toBeGreaterThan(0);
  expect(health.snapshot().alarms.map((a) => a.kind).sort()).toEqual(['drift', 'expert_starved', 'router_collapse']);

  alarms.length = 0;
  feed(health, i, 2000, healthy);
  expect(alarms.map((a) => `${a.kind}:${a.state}`).sort()).toEqual(['drift:cleared', 'expert_starved:cleared', 'router_collapse:cleared']);
  expect(health.snapshot().alarms).toEqual([]);
});

test('hysteresis: a share hovering around the bound raises once and does not flap', () => {
  // Expert 0 takes 10 of every 14 routed decisions: the window share wanders across 0.7.
  const pattern = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1];
  const run = (hysteresis: number) => {
    const health = new RoutingHealth({
      experts: 2,
      windowSize: 100,
      thresholds: { ...thresholds, hysteresis, collapseShare: 0.7, starvedShare: 0, earlyExit: { min: 0, max: 1 } },
    });
    const alarms: string[] = [];
    health.onAlarm((a) => alarms.push(`${a.kind}:${a.state}`));
    for (let i = 0; i < 5000; i++) health.observe(decided(i, pattern[i % pattern.length]));
    return alarms;
  };
  // Without a margin the alarm would flap; with one it is raised once.
  expect(run(0).length).toBeGreaterThan(10);
  expect(run(0.05)).toEqual(['router_collapse:raised']);
});

test('early-exit rate outside its band raises an alarm, and back inside clears it', () => {
  const health = new RoutingHealth({ experts: 4, windowSize: 200, thresholds });
  const alarms: HealthAlarm[] = [];
  health.onAlarm((a) => alarms.push(a));
  let i = feed(health, 0, 1000, healthy); // 20%: inside [0.1, 0.6]
  i = feed(health, i, 1000, (k) => (k % 10 === 0 ? 0 : null)); // 90% early exits
  feed(health, i, 1000, healthy);
  expect(alarms.filter((a) => a.kind === 'early_exit_rate').map((a) => a.state)).toEqual(['raised', 'cleared']);
  expect(alarms.find((a) => a.kind === 'early_exit_rate')!.value).toBeGreaterThan(0.6);
});

test('no alarm before the window holds minSamples decisions', () => {
  const health = new RoutingHealth({ experts: 4, expectedShare: UNIFORM, windowSize: 1000, thresholds });
  const alarms: HealthAlarm[] = [];
  health.onAlarm((a) => alarms.push(a));
  for (let i = 0; i < 99; i++) health.observe(decided(i, 0));
  expect(alarms).toEqual([]);
  health.observe(decided(99, 0));
  expect(alarms.map((a) => a.kind)).toContain('router_collapse');
});

test('AuditLog writes each alarm as an event once, hands it to the listener, and the stats see it as active', () => {
  const file = join(tmp.path, 'alarms.db');
  const heard: HealthAlarm[] = [];
  const log = AuditLog.open(file, {
    model: { ...MODEL, experts: 4, expertShare: UNIFORM },
    health: { windowSize: 400, thresholds },
    onAlarm: (a) => heard.push(a),
  });
  let i = feed(log, 0, 1000, healthy);
  i = feed(log, i, 1000, collapsed);
  expect(log.health().alarms.map((a) => a.kind).sort()).toEqual(['drift', 'expert_starved', 'router_collapse']);
  const reader = openAuditDbReadOnly(file);
  expect(auditStats(reader, {}).alarms.active.map((e) => e.details!.alarm).sort()).toEqual(['drift', 'expert_starved', 'router_collapse']);
  feed(log, i, 1000, healthy);
  expect(auditStats(reader, {}).alarms.active).toEqual([]);
  reader.close();
  expect(log.health().writer).toMatchObject({ accepted: 3000, overflow: 0, failed: 0 });
  log.close();

  const db = openAuditDbReadOnly(file);
  const events = listEvents(db);
  db.close();
  expect(events[0].kind).toBe('start');
  expect(events[events.length - 1]).toMatchObject({ kind: 'stop', details: { accepted: 3000, written: 3000 } });
  const alarmEvents = events.filter((e) => e.kind.startsWith('alarm_'));
  expect(alarmEvents.map((e) => `${String(e.details!.alarm)}:${e.kind}`).sort()).toEqual([
    'drift:alarm_cleared',
    'drift:alarm_raised',
    'expert_starved:alarm_cleared',
    'expert_starved:alarm_raised',
    'router_collapse:alarm_cleared',
    'router_collapse:alarm_raised',
  ]);
  expect(alarmEvents.every((e) => e.modelVersion === MODEL.version)).toBe(true);
  expect(heard.map((a) => `${a.kind}:${a.state}`).sort()).toEqual(alarmEvents.map((e) => `${String(e.details!.alarm)}:${e.kind.replace('alarm_', '')}`).sort());
});

test('a model change is an event and restarts the statistics against the new calibration', () => {
  const file = join(tmp.path, 'swap.db');
  const log = AuditLog.open(file, { model: { ...MODEL, experts: 4, expertShare: UNIFORM }, health: { thresholds } });
  feed(log, 0, 100, healthy);
  log.modelChanged('model_updated', { name: MODEL.name, version: '1.1.0', expertShare: [0.7, 0.1, 0.1, 0.1] });
  expect(log.health().allTime.decisions).toBe(0);
  feed(log, 100, 100, collapsed);
  const report = log.health();
  expect(report.model).toEqual({ name: MODEL.name, version: '1.1.0' });
  expect(report.window.drift).toBeCloseTo(0.3, 12);
  log.close();
  const db = openAuditDbReadOnly(file);
  const update = listEvents(db, {}, ['model_updated']);
  db.close();
  expect(update).toHaveLength(1);
  expect(update[0]).toMatchObject({ modelVersion: '1.1.0', details: { from: MODEL } });
});

test('a model with another number of experts gets statistics over its own experts, and a throwing listener loses nothing', () => {
  const health = new RoutingHealth({ experts: 4, expectedShare: UNIFORM, windowSize: 200, thresholds });
  const heard: string[] = [];
  health.onAlarm(() => {
    throw new Error('a listener that fails');
  });
  health.onAlarm((a) => heard.push(`${a.kind}:${a.state}`));
  feed(health, 0, 200, collapsed);
  expect(heard).toContain('router_collapse:raised');

  const eight = Array.from({ length: 8 }, () => 1 / 8);
  health.reset(eight);
  for (let i = 0; i < 160; i++) health.observe(decided(i, i % 8));
  const { window } = health.snapshot();
  expect(window.shares).toHaveLength(8);
  expect(window.shares.every((s) => Math.abs(s - 1 / 8) < 1e-12)).toBe(true);
  expect(window.drift).toBeCloseTo(0, 12);
});
