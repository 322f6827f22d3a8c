import { areaResize } from './area-resize';
import type { Size } from './geometry';
import { turboJpeg } from './turbojpeg';

/**
 * Frames up to this size take the camera path; larger ones (12 MP stills) go to sharp, which decodes off the
 * event loop.
 */
const CAMERA_PIXELS = 2_100_000;

/**
 * A camera JPEG straight to the model's size and pixel layout: libjpeg-turbo's DCT-scaled decode, then an area
 * average down to the model size. Undefined (use sharp) when libjpeg-turbo is not installed, the frame is large
 * (or over `maxPixels`: sharp names the refusal),
 * carries an EXIF orientation other than upright, or is anything libjpeg-turbo would warn about.
 */
export function decodeCameraJpeg(bytes: Buffer, target: Size, channels: 1 | 3, maxPixels: number): Buffer | undefined {
  const turbo = turboJpeg();
  if (!turbo || (exifOrientation(bytes) ?? 1) !== 1) return undefined;
  const decoded = turbo.decodeScaled(bytes, target, channels === 1, Math.min(CAMERA_PIXELS, maxPixels));
  if (!decoded) return undefined;
  if (decoded.width === target.width && decoded.height === target.height) return decoded.data;
  return areaResize(decoded.data, decoded, target, channels);
}

/** The EXIF orientation tag (0x0112) of a JPEG's APP1 segment, if it has one. */
export function exifOrientation(jpeg: Buffer): number | undefined {
  let at = 2;
  while (at + 4 <= jpeg.length && jpeg[at] === 0xff) {
    const marker = jpeg[at + 1];
    if (marker === 0xda || marker === 0xd9) return undefined; // image data: no more metadata segments
    const length = jpeg.readUInt16BE(at + 2);
    if (marker === 0xe1 && jpeg.toString('latin1', at + 4, at + 10) === 'Exif\0\0') return orientationIn(jpeg.subarray(at + 10, at + 2 + length));
    at += 2 + length;
  }
  return undefined;
}

function orientationIn(tiff: Buffer): number | undefined {
  if (tiff.length < 8) return undefined;
  const little = tiff.toString('latin1', 0, 2) === 'II';
  const u16 = (o: number) => (little ? tiff.readUInt16LE(o) : tiff.readUInt16BE(o));
  const ifd = little ? tiff.readUInt32LE(4) : tiff.readUInt32BE(4);
  if (ifd + 2 > tiff.length) return undefined;
  for (let i = 0, entry = ifd + 2; i < u16(ifd) && entry + 12 <= tiff.length; i++, entry += 12) {
    if (u16(entry) === 0x0112) return u16(entry + 8);
  }
  return undefined;
}
