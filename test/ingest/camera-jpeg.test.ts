import sharp from 'sharp';
import { Preprocessor } from '../../src/ingest';
import { areaResize } from '../../src/ingest/area-resize';
import { decodeCameraJpeg, exifOrientation } from '../../src/ingest/camera-jpeg';
import { turboJpeg } from '../../src/ingest/turbojpeg';
import { BUNDLED, readManifest } from '../helpers/package';

const input = readManifest(BUNDLED).input;

/** A 640x480 camera-like JPEG: smooth shading and texture. */
function cameraJpeg(options: { orientation?: number } = {}): Promise<Buffer> {
  const data = Buffer.alloc(640 * 480 * 3);
  for (let y = 0; y < 480; y++) {
    for (let x = 0; x < 640; x++) {
      const v = 128 + 60 * Math.sin(x / 37) * Math.cos(y / 23) + ((x * 7 + y * 13) % 17);
      data.fill(v & 255, (y * 640 + x) * 3, (y * 640 + x) * 3 + 3);
    }
  }
  const image = sharp(data, { raw: { width: 640, height: 480, channels: 3 } });
  return (options.orientation ? image.withMetadata({ orientation: options.orientation }) : image).jpeg({ quality: 90 }).toBuffer();
}

describe('camera JPEGs through libjpeg-turbo\'s DCT-scaled decode', () => {
  test('libjpeg-turbo is installed here (Debian libturbojpeg0), so the camera path is the one tested', () => {
    expect(turboJpeg()).toBeDefined();
  });

  test('a 640x480 JPEG becomes the model\'s 28x28 gray pixels, within a few levels of sharp\'s full decode and resize', async () => {
    const jpeg = await cameraJpeg();
    const fast = decodeCameraJpeg(jpeg, { width: 28, height: 28 }, 1, 50_000_000)!;
    expect(fast).toHaveLength(28 * 28);
    const viaSharp = await sharp(jpeg).greyscale().resize(28, 28, { fit: 'fill' }).raw().toBuffer();
    const diffs = [...fast].map((v, i) => Math.abs(v - viaSharp[i]));
    expect(Math.max(...diffs)).toBeLessThanOrEqual(8);
    expect(diffs.reduce((a, b) => a + b, 0) / diffs.length).toBeLessThan(2);
    // The Preprocessor takes this path for whole frames; with an ROI it keeps sharp's geometry.
    const pre = new Preprocessor(input);
    const tensor = await pre.toTensor(jpeg);
    const lut = (v: number) => Math.fround(Math.fround(Math.fround(v / 255) - Math.fround(input.mean[0])) / Math.fround(input.std[0]));
    expect([...tensor]).toEqual([...fast].map(lut));
  });

  test('a JPEG with an EXIF orientation other than upright, or one damaged, is left to sharp', async () => {
    const rotated = await cameraJpeg({ orientation: 6 });
    expect(exifOrientation(rotated)).toBe(6);
    expect(exifOrientation(await cameraJpeg())).toBeUndefined();
    expect(decodeCameraJpeg(rotated, { width: 28, height: 28 }, 1, 50_000_000)).toBeUndefined();
    // sharp turns it upright: 640x480 rotated is 480x640.
    expect((await sharp(rotated, { autoOrient: true }).toBuffer({ resolveWithObject: true })).info).toMatchObject({ width: 480, height: 640 });
    const jpeg = await cameraJpeg();
    const truncated = jpeg.subarray(0, jpeg.length / 2);
    expect(decodeCameraJpeg(truncated, { width: 28, height: 28 }, 1, 50_000_000)).toBeUndefined();
    await expect(new Preprocessor(input).toTensor(truncated)).rejects.toMatchObject({ code: 'E_FRAME_DECODE' });
    // Over the configured pixel budget: sharp refuses it by name.
    expect(decodeCameraJpeg(jpeg, { width: 28, height: 28 }, 1, 50_000)).toBeUndefined();
  });

  test('area averaging: each output pixel is the mean of its exact footprint, fractional edges weighted', () => {
    const four = Buffer.from([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]);
    expect([...areaResize(four, { width: 4, height: 4 }, { width: 2, height: 2 }, 1)]).toEqual([25, 45, 105, 125]);
    // 3 -> 2 columns: weights 2/3, 1/3 and 1/3, 2/3.
    expect([...areaResize(Buffer.from([0, 30, 90]), { width: 3, height: 1 }, { width: 2, height: 1 }, 1)]).toEqual([10, 70]);
    const rgb = Buffer.from([255, 0, 0, 0, 0, 255]);
    expect([...areaResize(rgb, { width: 2, height: 1 }, { width: 1, height: 1 }, 3)]).toEqual([128, 0, 128]);
  });
});
