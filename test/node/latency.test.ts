import { LatencyWindow, RATE_WINDOW_MS } from '../../src/node/latency';

describe('frames per second', () => {
  it('counts the decisions of the last 10 s, and falls to 0 once the line has stalled that long', () => {
    const window = new LatencyWindow(1000);
    const t0 = 1_000_000;
    for (let i = 0; i < 400; i++) window.add(1000, t0 + i * 100); // 10 frames/s for 40 s
    const last = t0 + 399 * 100;
    expect(window.rate(last)).toBeCloseTo(10, 0);
    expect(window.rate(last + RATE_WINDOW_MS / 2)).toBeCloseTo(5, 0); // half the span without frames
    expect(window.rate(last + RATE_WINDOW_MS)).toBe(0);
    expect(window.rate(last + 72_000)).toBe(0);
  });

  it('measures a young node since its first decision, over at least a second', () => {
    const window = new LatencyWindow(1000);
    for (let i = 0; i < 20; i++) window.add(1000, 5000 + i * 100); // 2 s at 10 frames/s
    expect(window.rate(5000 + 2000)).toBeCloseTo(10, 0);
    const single = new LatencyWindow(1000);
    single.add(1000, 5000);
    expect(single.rate(5000)).toBe(1);
    expect(new LatencyWindow(1000).rate(5000)).toBe(0);
  });
});
