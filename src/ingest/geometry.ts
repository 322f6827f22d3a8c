import { SgmoeError } from '../errors';

export interface Size {
  width: number;
  height: number;
}

/** A region of the (EXIF-oriented) frame, in pixels. */
export interface Rect extends Size {
  x: number;
  y: number;
}

/** How the frame (or its ROI) is brought to the model size: stretched, letterboxed with the pad colour, or centre-cropped. */
export type Fit = 'fill' | 'contain' | 'cover';

export interface Padding {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/**
 * The geometry sharp runs for one frame:
 * - `resize`: the whole frame to the model size with sharp's own fit (shrink-on-load applies);
 * - `crop-then-resize`: cut the ROI first, then resize (used when enlarging, so the whole frame is never enlarged);
 * - `resize-then-crop`: shrink the whole frame so the ROI lands at model size, then cut the window (used when
 *   reducing: sharp disables JPEG/WebP shrink-on-load when a crop comes before the resize, and libvips then only
 *   computes the pixels of the window). Rounding the shrunk frame size to whole pixels moves the window by at
 *   most one model pixel compared with crop-then-resize.
 */
export type GeometryPlan =
  | { kind: 'resize' }
  | { kind: 'crop-then-resize'; crop: Rect }
  | { kind: 'resize-then-crop'; size: Size; crop: Rect; pad?: Padding };

const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), hi);

export function planGeometry(frame: Size, target: Size, fit: Fit, roi?: Rect): GeometryPlan {
  if (!roi || (roi.x === 0 && roi.y === 0 && roi.width === frame.width && roi.height === frame.height)) {
    return { kind: 'resize' };
  }
  if (roi.x + roi.width > frame.width || roi.y + roi.height > frame.height) {
    throw new SgmoeError(
      'E_FRAME_ROI',
      `expected the ROI ${roi.width}x${roi.height}+${roi.x}+${roi.y} inside the frame, found a ${frame.width}x${frame.height} frame`,
      { roi, frame },
    );
  }
  const fx = target.width / roi.width;
  const fy = target.height / roi.height;
  const [sx, sy] = fit === 'fill' ? [fx, fy] : fit === 'contain' ? [Math.min(fx, fy), Math.min(fx, fy)] : [Math.max(fx, fy), Math.max(fx, fy)];
  if (sx > 1 || sy > 1) return { kind: 'crop-then-resize', crop: roi };

  const size = { width: Math.max(1, Math.round(frame.width * sx)), height: Math.max(1, Math.round(frame.height * sy)) };
  const ex = size.width / frame.width;
  const ey = size.height / frame.height;
  // The ROI in the shrunk frame, then a window of the model size (fill, cover) or of the scaled ROI (contain).
  const scaled = { x: roi.x * ex, y: roi.y * ey, width: roi.width * ex, height: roi.height * ey };
  const width = fit === 'contain' ? Math.min(target.width, Math.round(scaled.width)) : target.width;
  const height = fit === 'contain' ? Math.min(target.height, Math.round(scaled.height)) : target.height;
  const crop = {
    x: clamp(Math.round(scaled.x + (scaled.width - width) / 2), 0, size.width - width),
    y: clamp(Math.round(scaled.y + (scaled.height - height) / 2), 0, size.height - height),
    width,
    height,
  };
  if (width === target.width && height === target.height) return { kind: 'resize-then-crop', size, crop };
  // Centred like sharp's own `contain`.
  const left = Math.floor((target.width - width) / 2);
  const top = Math.floor((target.height - height) / 2);
  return {
    kind: 'resize-then-crop',
    size,
    crop,
    pad: { left, right: target.width - width - left, top, bottom: target.height - height - top },
  };
}
