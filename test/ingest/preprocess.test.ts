import { SgmoeError } from '../../src/errors';
import { Preprocessor } from '../../src/ingest';
import type { Frame } from '../../src/ingest';
import { GRAY_28, RGB_32, encodeGray, encodeRgb, expected, grayPixels, maxAbsDiff, pngBomb, rgbPixels } from './images';

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof SgmoeError) return err.code;
    throw err;
  }
  throw new Error('expected a rejection');
};

const frame = (id: string, bytes: Buffer): Frame => ({ id, source: 'test', receivedAt: Date.now(), bytes });

describe('Preprocessor: normalisation', () => {
  test('a 28x28 gray PNG becomes (x/255 - mean)/std per pixel, in row-major order', async () => {
    const pixels = grayPixels(28, 28, (x, y) => (x * 9 + y * 3) % 256);
    const png = await encodeGray(pixels, 28, 28).png().toBuffer();
    const tensor = await new Preprocessor(GRAY_28).toTensor(png);
    expect(tensor).toHaveLength(28 * 28);
    const want = Array.from(pixels, (v) => expected(v, 0.286, 0.353));
    expect(maxAbsDiff(tensor, want)).toBeLessThan(1e-6);
  });

  test('invert flips the pixel values before normalising', async () => {
    const pixels = grayPixels(28, 28, (x) => x * 9);
    const png = await encodeGray(pixels, 28, 28).png().toBuffer();
    const tensor = await new Preprocessor({ ...GRAY_28, invert: true }).toTensor(png);
    expect(maxAbsDiff(tensor, Array.from(pixels, (v) => expected(255 - v, 0.286, 0.353)))).toBeLessThan(1e-6);
  });

  test('RGB is planar (NCHW) with per-channel mean/std; a BGR model gets the channels swapped', async () => {
    const pixels = rgbPixels(32, 32, (x, y) => [x * 8, y * 8, 200]);
    const png = await encodeRgb(pixels, 32, 32).png().toBuffer();
    const rgb = await new Preprocessor(RGB_32).toTensor(png);
    const bgr = await new Preprocessor({ ...RGB_32, colorspace: 'bgr', mean: [0.406, 0.456, 0.485], std: [0.225, 0.224, 0.229] }).toTensor(png);
    const plane = 32 * 32;
    const i = 5 * 32 + 7; // x = 7, y = 5
    expect(rgb[i]).toBeCloseTo(expected(56, 0.485, 0.229), 5);
    expect(rgb[plane + i]).toBeCloseTo(expected(40, 0.456, 0.224), 5);
    expect(rgb[2 * plane + i]).toBeCloseTo(expected(200, 0.406, 0.225), 5);
    expect(bgr[i]).toBeCloseTo(rgb[2 * plane + i], 6);
    expect(bgr[2 * plane + i]).toBeCloseTo(rgb[i], 6);
  });

  test('JPEG, WebP, TIFF and GIF (first frame) decode to the same tensor as PNG', async () => {
    const pixels = grayPixels(28, 28, (x, y) => ((x >> 2) + (y >> 2)) % 2 ? 240 : 16);
    const pre = new Preprocessor(GRAY_28);
    const png = await pre.toTensor(await encodeGray(pixels, 28, 28).png().toBuffer());
    const lossless = [
      await encodeGray(pixels, 28, 28).webp({ lossless: true }).toBuffer(),
      await encodeGray(pixels, 28, 28).tiff({ compression: 'lzw' }).toBuffer(),
      await encodeGray(pixels, 28, 28).gif().toBuffer(),
    ];
    for (const bytes of lossless) expect(maxAbsDiff(await pre.toTensor(bytes), png)).toBeLessThan(1e-6);
  });

  test('PNG and JPEG q=100 of the same photo-like image give nearly equal tensors', async () => {
    const pixels = rgbPixels(64, 48, (x, y) => [x * 4, y * 5, 128 + Math.round(60 * Math.sin(x / 9) * Math.cos(y / 7))]);
    const pre = new Preprocessor(RGB_32);
    const png = await pre.toTensor(await encodeRgb(pixels, 64, 48).png().toBuffer());
    const jpg = await pre.toTensor(await encodeRgb(pixels, 64, 48).jpeg({ quality: 100 }).toBuffer());
    // A few uint8 levels at most (1 level = 1/255/std ~ 0.017 here); a wrong channel or orientation is > 1.
    expect(maxAbsDiff(png, jpg)).toBeLessThan(0.1);
    const meanDiff = png.reduce((s, v, i) => s + Math.abs(v - jpg[i]), 0) / png.length;
    expect(meanDiff).toBeLessThan(0.015);
  });
});

describe('Preprocessor: geometry', () => {
  // Left half white, right half black, stored 40 wide x 20 high.
  const halves = grayPixels(40, 20, (x) => (x < 20 ? 255 : 0));
  const tall = { ...GRAY_28, width: 20, height: 40 };

  test('EXIF orientation 6 is applied: the stored left half ends up on top', async () => {
    const jpg = await encodeGray(halves, 40, 20).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    const t = await new Preprocessor(tall).toTensor(jpg);
    const white = expected(255, 0.286, 0.353);
    const black = expected(0, 0.286, 0.353);
    expect(Math.abs(t[5 * 20 + 10] - white)).toBeLessThan(0.1); // row 5 of 40: top half
    expect(Math.abs(t[35 * 20 + 10] - black)).toBeLessThan(0.1); // row 35: bottom half
    // Without the EXIF tag the same pixels would be stretched left/right instead.
    const plain = await new Preprocessor(tall).toTensor(await encodeGray(halves, 40, 20).jpeg({ quality: 95 }).toBuffer());
    expect(Math.abs(plain[5 * 20 + 2] - white)).toBeLessThan(0.1);
    expect(Math.abs(plain[5 * 20 + 17] - black)).toBeLessThan(0.1);
  });

  test('the ROI is taken in the oriented frame', async () => {
    const jpg = await encodeGray(halves, 40, 20).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    // Oriented frame is 20x40: the top 20x20 is white, the bottom black.
    const bottom = await new Preprocessor(GRAY_28, { roi: { x: 0, y: 24, width: 20, height: 16 } }).toTensor(jpg);
    expect(Math.max(...bottom)).toBeLessThan(expected(30, 0.286, 0.353));
  });

  test("the package's input.roi is the default ROI, and a source's own roi overrides it", async () => {
    const png = await encodeGray(halves, 40, 20).png().toBuffer(); // left half white, right half black
    const withRoi = { ...GRAY_28, roi: { x: 20, y: 0, width: 20, height: 20 } };
    const right = await new Preprocessor(withRoi).toTensor(png);
    expect(Math.max(...right)).toBeLessThan(expected(30, 0.286, 0.353));
    expect(await new Preprocessor(withRoi).toPixels(png)).toHaveLength(28 * 28);
    const left = await new Preprocessor(withRoi, { roi: { x: 0, y: 0, width: 20, height: 20 } }).toTensor(png);
    expect(Math.min(...left)).toBeGreaterThan(expected(225, 0.286, 0.353));
  });

  // A gradient patch placed inside a larger noisy-background scene.
  async function scene(patch: Buffer, size: number, at: { x: number; y: number }, sceneW: number, sceneH: number): Promise<Buffer> {
    const background = grayPixels(sceneW, sceneH, (x, y) => (x * 7 + y * 13) % 256);
    return encodeGray(background, sceneW, sceneH)
      .composite([{ input: patch, raw: { width: size, height: size, channels: 1 }, left: at.x, top: at.y }])
      .png()
      .toBuffer();
  }

  test('ROI when reducing (shrink, then cut) equals preprocessing the cut-out patch alone', async () => {
    const patch = grayPixels(280, 280, (x, y) => Math.floor((x + y) / 2.2));
    const big = await scene(patch, 280, { x: 140, y: 70 }, 640, 480);
    const alone = await new Preprocessor(GRAY_28).toTensor(await encodeGray(patch, 280, 280).png().toBuffer());
    const roi = await new Preprocessor(GRAY_28, { roi: { x: 140, y: 70, width: 280, height: 280 } }).toTensor(big);
    // 640*0.1 and 480*0.1 are whole pixels, so the window is exact; only the resampling at the edges differs.
    const interior = (t: Float32Array) => Array.from(t).filter((_, i) => i % 28 > 1 && i % 28 < 26 && i >= 56 && i < 28 * 26);
    expect(maxAbsDiff(interior(roi), interior(alone))).toBeLessThan(0.03);
    const whole = await new Preprocessor(GRAY_28).toTensor(big);
    expect(maxAbsDiff(whole, alone)).toBeGreaterThan(0.5);
  });

  test('ROI when enlarging (cut, then resize) equals preprocessing the patch alone', async () => {
    const patch = grayPixels(14, 14, (x, y) => x * 18 + (y & 1) * 3);
    const big = await scene(patch, 14, { x: 33, y: 21 }, 100, 80);
    const alone = await new Preprocessor(GRAY_28).toTensor(await encodeGray(patch, 14, 14).png().toBuffer());
    const roi = await new Preprocessor(GRAY_28, { roi: { x: 33, y: 21, width: 14, height: 14 } }).toTensor(big);
    expect(maxAbsDiff(roi, alone)).toBeLessThan(1e-6);
  });

  test('fit: fill stretches, contain letterboxes with the pad colour, cover crops the centre', async () => {
    // 84x28: a white square in the middle third, gray elsewhere.
    const wide = await encodeGray(grayPixels(84, 28, (x) => (x >= 28 && x < 56 ? 255 : 128)), 84, 28).png().toBuffer();
    const at = (t: Float32Array, x: number, y: number) => Math.round((t[y * 28 + x] * 0.353 + 0.286) * 255) + 0; // + 0: no -0
    const fill = await new Preprocessor(GRAY_28, { fit: 'fill' }).toTensor(wide);
    expect([at(fill, 2, 14), at(fill, 14, 14), at(fill, 25, 14)]).toEqual([128, 255, 128]);
    const contain = await new Preprocessor(GRAY_28, { fit: 'contain', pad: '#000000' }).toTensor(wide);
    expect([at(contain, 14, 2), at(contain, 14, 14), at(contain, 2, 14), at(contain, 14, 25)]).toEqual([0, 255, 128, 0]);
    const cover = await new Preprocessor(GRAY_28, { fit: 'cover' }).toTensor(wide);
    expect(Math.min(...Array.from(cover, (_, i) => at(cover, i % 28, Math.floor(i / 28))))).toBe(255);
  });

  test('contain with an ROI that is reduced pads with the pad colour too', async () => {
    // ROI 112x56 (2:1) of a white 200x100 frame into 28x28: 28x14 of white, 7 rows of pad above and below.
    const white = await encodeGray(grayPixels(200, 100, () => 255), 200, 100).png().toBuffer();
    const t = await new Preprocessor(GRAY_28, { fit: 'contain', pad: '#808080', roi: { x: 10, y: 20, width: 112, height: 56 } }).toTensor(white);
    const row = (y: number) => Math.round((t[y * 28 + 14] * 0.353 + 0.286) * 255) + 0;
    expect([row(0), row(6), row(7), row(14), row(20), row(21), row(27)]).toEqual([128, 128, 255, 255, 255, 128, 128]);
  });
});

describe('Preprocessor: raw pixels', () => {
  test('gray, RGB with row padding (stride) and BGR give the tensors of the same picture', async () => {
    const rgb = rgbPixels(32, 32, (x, y) => [x * 8, 255 - y * 8, 77]);
    const pre = new Preprocessor(RGB_32);
    const fromPng = await pre.toTensor(await encodeRgb(rgb, 32, 32).png().toBuffer());
    expect(maxAbsDiff(await pre.toTensor({ data: rgb, width: 32, height: 32, channels: 3, format: 'rgb' }), fromPng)).toBeLessThan(1e-6);

    const stride = 32 * 3 + 8;
    const padded = Buffer.alloc(stride * 32, 0xee);
    const bgr = Buffer.alloc(stride * 32, 0xee);
    for (let y = 0; y < 32; y++) {
      rgb.copy(padded, y * stride, y * 96, y * 96 + 96);
      for (let x = 0; x < 32; x++) for (let c = 0; c < 3; c++) bgr[y * stride + x * 3 + c] = rgb[y * 96 + x * 3 + 2 - c];
    }
    expect(maxAbsDiff(await pre.toTensor({ data: padded, width: 32, height: 32, channels: 3, format: 'rgb', stride }), fromPng)).toBeLessThan(1e-6);
    const asFrame: Frame = { id: 'cam#1', source: 'cam', receivedAt: 0, raw: { data: bgr, width: 32, height: 32, channels: 3, format: 'bgr', stride } };
    expect(maxAbsDiff(await pre.toTensor(asFrame), fromPng)).toBeLessThan(1e-6);

    const gray = grayPixels(28, 28, (x, y) => x + y * 9);
    const t = await new Preprocessor(GRAY_28).toTensor({ data: gray, width: 28, height: 28, channels: 1, format: 'gray' });
    expect(maxAbsDiff(t, Array.from(gray, (v) => expected(v, 0.286, 0.353)))).toBeLessThan(1e-6);
  });
});

describe('Preprocessor: bad input gets a specific E_FRAME_* code', () => {
  const pre = new Preprocessor(GRAY_28);
  let jpeg: Buffer;
  beforeAll(async () => {
    jpeg = await encodeGray(grayPixels(320, 240, (x, y) => (x ^ y) & 255), 320, 240).jpeg({ quality: 90 }).toBuffer();
  });

  test('zero bytes, and a frame with neither bytes nor pixels', async () => {
    expect(await codeOf(pre.toTensor(Buffer.alloc(0)))).toBe('E_FRAME_EMPTY');
    expect(await codeOf(pre.toTensor({ id: 'f1', source: 's', receivedAt: 0 }))).toBe('E_FRAME_EMPTY');
  });

  test('a truncated JPEG', async () => {
    expect(await codeOf(pre.toTensor(jpeg.subarray(0, Math.floor(jpeg.length * 0.6))))).toBe('E_FRAME_DECODE');
  });

  test('a text file named .jpg, and a BMP, are refused by format and say what they are', async () => {
    const err = await pre.toTensor(frame('/in/part.jpg', Buffer.from('<html>502 Bad Gateway</html>'))).catch((e) => e);
    expect(err).toBeInstanceOf(SgmoeError);
    expect(err.code).toBe('E_FRAME_FORMAT');
    expect(err.message).toContain('frame /in/part.jpg');
    expect(err.message).toContain('text starting "<html>502 Bad Ga"');
    expect(err.details.frameId).toBe('/in/part.jpg');
    const bmp = Buffer.concat([Buffer.from('BM'), Buffer.alloc(60)]);
    await expect(pre.toTensor(bmp)).rejects.toMatchObject({ code: 'E_FRAME_FORMAT', message: expect.stringContaining('BMP') });
  });

  test('a PNG whose header declares 100000 x 100000 pixels is refused by size, with or without an ROI', async () => {
    const bomb = pngBomb(100_000, 100_000);
    expect(bomb.length).toBeLessThan(200);
    await expect(pre.toTensor(bomb)).rejects.toMatchObject({ code: 'E_FRAME_TOO_LARGE', message: expect.stringContaining('100000x100000') });
    const withRoi = new Preprocessor(GRAY_28, { roi: { x: 0, y: 0, width: 10, height: 10 } });
    expect(await codeOf(withRoi.toTensor(bomb))).toBe('E_FRAME_TOO_LARGE');
    // The limit is configurable: a 320x240 JPEG is too large for a 50000-pixel budget.
    expect(await codeOf(new Preprocessor(GRAY_28, { maxPixels: 50_000 }).toTensor(jpeg))).toBe('E_FRAME_TOO_LARGE');
  });

  test('raw pixels of the wrong size or shape', async () => {
    const raw = { data: Buffer.alloc(28 * 28 - 1), width: 28, height: 28, channels: 1 as const, format: 'gray' as const };
    await expect(pre.toTensor(raw)).rejects.toMatchObject({ code: 'E_FRAME_RAW_SIZE', message: expect.stringContaining('expected 784 bytes') });
    expect(await codeOf(pre.toTensor({ ...raw, data: Buffer.alloc(28 * 28 * 3), channels: 3 as unknown as 1 }))).toBe('E_FRAME_RAW');
    expect(await codeOf(pre.toTensor({ ...raw, data: Buffer.alloc(28 * 28), stride: 20 }))).toBe('E_FRAME_RAW_SIZE');
  });

  test('a frame too small for the model to judge (1x1) is refused with E_FRAME_TOO_SMALL, encoded or raw, before decoding', async () => {
    const tiny = await encodeGray(grayPixels(1, 1, () => 200), 1, 1).png().toBuffer();
    await expect(pre.toTensor(tiny)).rejects.toMatchObject({ code: 'E_FRAME_TOO_SMALL', message: expect.stringContaining('at least 7x7 pixels for a 28x28 model input, found 1x1') });
    const raw = { data: Buffer.alloc(6 * 40), width: 6, height: 40, channels: 1 as const, format: 'gray' as const };
    expect(await codeOf(pre.toTensor(raw))).toBe('E_FRAME_TOO_SMALL');
    // A quarter of the model's side is the default minimum: 7x7 goes through.
    await expect(pre.toTensor(await encodeGray(grayPixels(7, 7, () => 9), 7, 7).png().toBuffer())).resolves.toHaveLength(784);
    expect(await codeOf(new Preprocessor(GRAY_28, { roi: { x: 0, y: 0, width: 3, height: 3 } }).toTensor(jpeg))).toBe('E_FRAME_TOO_SMALL');
  });

  test("a package's input.minSourceSize replaces the default minimum", async () => {
    const strict = new Preprocessor({ ...GRAY_28, minSourceSize: { width: 28, height: 28 } });
    expect(await codeOf(strict.toTensor(await encodeGray(grayPixels(20, 28, () => 9), 20, 28).png().toBuffer()))).toBe('E_FRAME_TOO_SMALL');
    await expect(strict.toTensor(await encodeGray(grayPixels(28, 28, () => 9), 28, 28).png().toBuffer())).resolves.toHaveLength(784);
  });

  test('an ROI outside the frame', async () => {
    const roi = new Preprocessor(GRAY_28, { roi: { x: 300, y: 0, width: 50, height: 50 } });
    await expect(roi.toTensor(jpeg)).rejects.toMatchObject({ code: 'E_FRAME_ROI', message: expect.stringContaining('320x240 frame') });
  });

  test('invalid options are refused when the preprocessor is made', () => {
    expect(() => new Preprocessor(GRAY_28, { roi: { x: -1, y: 0, width: 0, height: 5 } })).toThrow(
      expect.objectContaining({ code: 'E_CONFIG_INVALID' }),
    );
    expect(() => new Preprocessor(GRAY_28, { pad: 'reddish' })).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }));
  });

  test('a batch keeps the good frames, lists each bad one, and the next frame goes through', async () => {
    const good = await encodeGray(grayPixels(28, 28, (x) => x * 9), 28, 28).png().toBuffer();
    const inputs = [good, Buffer.alloc(0), jpeg.subarray(0, 400), Buffer.from('not an image'), pngBomb(100_000, 100_000), jpeg];
    const batch = await pre.toBatch(inputs);
    expect(batch.dims).toEqual([2, 1, 28, 28]);
    expect(batch.indices).toEqual([0, 5]);
    expect(batch.rejected.map((r) => [r.index, r.error.code])).toEqual([
      [1, 'E_FRAME_EMPTY'],
      [2, 'E_FRAME_DECODE'],
      [3, 'E_FRAME_FORMAT'],
      [4, 'E_FRAME_TOO_LARGE'],
    ]);
    expect(maxAbsDiff(batch.data.subarray(0, 784), await pre.toTensor(good))).toBe(0);
    expect(maxAbsDiff(batch.data.subarray(784), await pre.toTensor(jpeg))).toBe(0);
  });
});
