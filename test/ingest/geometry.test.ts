import { planGeometry } from '../../src/ingest/geometry';

const T = { width: 28, height: 28 };

describe('planGeometry', () => {
  test('no ROI, or an ROI that is the whole frame: one resize with sharp\'s own fit', () => {
    expect(planGeometry({ width: 640, height: 480 }, T, 'fill')).toEqual({ kind: 'resize' });
    expect(planGeometry({ width: 640, height: 480 }, T, 'cover', { x: 0, y: 0, width: 640, height: 480 })).toEqual({ kind: 'resize' });
  });

  test('reducing ROI: shrink the whole frame so the ROI lands at model size, then cut the window', () => {
    expect(planGeometry({ width: 1920, height: 1080 }, T, 'fill', { x: 560, y: 140, width: 800, height: 800 })).toEqual({
      kind: 'resize-then-crop',
      size: { width: 67, height: 38 },
      crop: { x: 20, y: 5, width: 28, height: 28 },
    });
  });

  test('cover keeps the centre of a wide ROI; contain pads a wide ROI above and below', () => {
    const frame = { width: 1000, height: 1000 };
    const roi = { x: 100, y: 200, width: 560, height: 280 };
    expect(planGeometry(frame, T, 'cover', roi)).toEqual({
      kind: 'resize-then-crop',
      size: { width: 100, height: 100 },
      crop: { x: 24, y: 20, width: 28, height: 28 },
    });
    expect(planGeometry(frame, T, 'contain', roi)).toEqual({
      kind: 'resize-then-crop',
      size: { width: 50, height: 50 },
      crop: { x: 5, y: 10, width: 28, height: 14 },
      pad: { top: 7, bottom: 7, left: 0, right: 0 },
    });
  });

  test('enlarging ROI: cut first, so the whole frame is never enlarged', () => {
    const roi = { x: 10, y: 10, width: 20, height: 20 };
    expect(planGeometry({ width: 4000, height: 3000 }, T, 'fill', roi)).toEqual({ kind: 'crop-then-resize', crop: roi });
  });

  test('the window never leaves the shrunk frame, even with rounding at the border', () => {
    const plan = planGeometry({ width: 333, height: 333 }, T, 'fill', { x: 233, y: 233, width: 100, height: 100 });
    expect(plan.kind).toBe('resize-then-crop');
    if (plan.kind !== 'resize-then-crop') return;
    expect(plan.crop.x + plan.crop.width).toBeLessThanOrEqual(plan.size.width);
    expect(plan.crop.y + plan.crop.height).toBeLessThanOrEqual(plan.size.height);
  });

  test('an ROI outside the frame is E_FRAME_ROI', () => {
    expect(() => planGeometry({ width: 100, height: 100 }, T, 'fill', { x: 90, y: 0, width: 20, height: 20 })).toThrow(
      expect.objectContaining({ code: 'E_FRAME_ROI' }),
    );
  });
});
