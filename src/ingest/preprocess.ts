import sharp, { type Sharp } from 'sharp';
import { imageSize } from 'image-size';
import { z } from 'zod';
import { SgmoeError } from '../errors';
import { validate } from '../validate';
import type { InputSpec } from '../model/manifest';
import { decodeCameraJpeg } from './camera-jpeg';
import type { Frame, RawPixels } from './frame';
import { describeBytes, sniffFormat, type ImageFormat } from './format';
import { planGeometry, type Rect, type Size } from './geometry';

/** 50 megapixels: any industrial camera frame fits, a decompression bomb does not. */
export const DEFAULT_MAX_PIXELS = 50_000_000;

const int = z.number().int();
export const preprocessOptionsSchema = z.object({
  /** Region of the EXIF-oriented frame the model looks at (a fixed camera sees the part at a known place). */
  roi: z.object({ x: int.min(0), y: int.min(0), width: int.min(1), height: int.min(1) }).optional(),
  fit: z.enum(['fill', 'contain', 'cover']).default('fill'),
  /** Colour of `contain` borders and of transparent pixels. */
  pad: z
    .union([
      z.string().regex(/^#([0-9a-f]{3}|[0-9a-f]{6})$/i, 'a #rgb or #rrggbb colour'),
      z.object({ r: int.min(0).max(255), g: int.min(0).max(255), b: int.min(0).max(255) }),
    ])
    .default('#000000'),
  /** Frames declaring more pixels than this are refused from their header, before any decoding. */
  maxPixels: int.positive().default(DEFAULT_MAX_PIXELS),
});

export type PreprocessOptions = z.input<typeof preprocessOptionsSchema>;
type Options = z.output<typeof preprocessOptionsSchema>;

/** What `toTensor` accepts: a frame, an encoded image, or decoded pixels. */
export type PreprocessInput = Frame | Buffer | RawPixels;

/** Tensors of the inputs that made it, stacked NCHW, and the inputs that were refused with why. */
export interface TensorBatch {
  data: Float32Array;
  dims: [number, number, number, number];
  /** Position in the input list of each tensor in `data`, in order. */
  indices: number[];
  rejected: { index: number; error: SgmoeError }[];
}

/**
 * Turns frames into exactly the tensor the model was trained on (docs/DESIGN.md): decode, EXIF auto-orient,
 * optional ROI, resize, colorspace, then `(x / 255 - mean) / std` per channel, Float32 NCHW.
 * Bad frames throw an SgmoeError with an E_FRAME_* code; nothing else does.
 */
export class Preprocessor {
  readonly dims: [number, number, number];
  private readonly options: Options;
  /** Per model channel: uint8 value -> normalised float, computed like PyTorch in float32. */
  private readonly luts: Float32Array[];
  private readonly minSize: Size;

  constructor(
    private readonly spec: InputSpec,
    options: PreprocessOptions = {},
  ) {
    const valid = validate(preprocessOptionsSchema, options, { code: 'E_CONFIG_INVALID', where: 'preprocessing options' });
    // The package's default ROI (the region it was trained on) unless the source names its own.
    this.options = { ...valid, roi: valid.roi ?? spec.roi };
    this.dims = [spec.channels, spec.height, spec.width];
    this.luts = spec.mean.map((mean, c) => normalisationTable(mean, spec.std[c], spec.invert));
    this.minSize = spec.minSourceSize ?? { width: Math.ceil(spec.width / 4), height: Math.ceil(spec.height / 4) };
  }

  /** C*H*W floats for one input. */
  async toTensor(input: PreprocessInput): Promise<Float32Array> {
    const out = new Float32Array(this.dims[0] * this.dims[1] * this.dims[2]);
    this.normalise(await this.toPixels(input), out, 0);
    return out;
  }

  /**
   * Interleaved uint8 pixels at model size (RGB order for 3 channels), before normalisation: what the model factory
   * trains on, so training and the device see the same tensor from the same file.
   */
  async toPixels(input: PreprocessInput): Promise<Buffer> {
    return this.pixels(input);
  }

  /** N*C*H*W floats; a bad input is listed in `rejected` and does not stop the others. */
  async toBatch(inputs: PreprocessInput[]): Promise<TensorBatch> {
    const settled = await Promise.allSettled(inputs.map((input) => this.pixels(input)));
    const size = this.dims[0] * this.dims[1] * this.dims[2];
    const batch: TensorBatch = { data: new Float32Array(0), dims: [0, ...this.dims], indices: [], rejected: [] };
    const ok: Buffer[] = [];
    settled.forEach((s, index) => {
      if (s.status === 'fulfilled') {
        batch.indices.push(index);
        ok.push(s.value);
      } else {
        batch.rejected.push({ index, error: asFrameError(s.reason) });
      }
    });
    batch.data = new Float32Array(ok.length * size);
    ok.forEach((pixels, n) => this.normalise(pixels, batch.data, n * size));
    batch.dims[0] = ok.length;
    return batch;
  }

  /** Interleaved uint8 pixels at model size, in RGB order for 3 channels. */
  private async pixels(input: PreprocessInput): Promise<Buffer> {
    const frame = Buffer.isBuffer(input) || !('id' in input) ? undefined : input;
    const raw = frame ? frame.raw : Buffer.isBuffer(input) ? undefined : (input as RawPixels);
    const bytes = frame ? frame.bytes : Buffer.isBuffer(input) ? input : undefined;
    try {
      if (raw) {
        const size = { width: raw.width, height: raw.height };
        const roi = raw.prepared ? undefined : this.options.roi;
        // A camera decoder's frame is at the model size already: what it was made from must be large enough.
        this.checkSize(raw.prepared ? (frame?.meta?.region as Size | undefined) : (roi ?? size));
        if (raw.prepared && this.fitsModel(raw)) return raw.data;
        return await this.run(rawPipeline(raw, this.options.maxPixels), size, roi);
      }
      if (!bytes || bytes.length === 0) {
        throw new SgmoeError('E_FRAME_EMPTY', `expected an encoded image or raw pixels, found ${bytes ? 'zero bytes' : 'neither'}`);
      }
      return await this.decode(bytes);
    } catch (err) {
      throw frame ? aboutFrame(asFrameError(err), frame.id) : asFrameError(err);
    }
  }

  private async decode(bytes: Buffer): Promise<Buffer> {
    const format = sniffFormat(bytes);
    if (!format) {
      throw new SgmoeError('E_FRAME_FORMAT', `expected a JPEG, PNG, WebP, TIFF or GIF image, found ${describeBytes(bytes)}`);
    }
    // Camera JPEGs: libjpeg-turbo's DCT-scaled decode costs a fraction of a sharp call (scripts/bench/ingest.ts).
    if (format === 'jpeg' && !this.options.roi && this.options.fit === 'fill') {
      const pixels = decodeCameraJpeg(bytes, { width: this.spec.width, height: this.spec.height }, this.dims[0] === 1 ? 1 : 3, this.options.maxPixels);
      if (pixels) return pixels;
    }
    const open = (): Sharp => sharp(bytes, { autoOrient: true, limitInputPixels: this.options.maxPixels, failOn: 'warning' });
    try {
      const { roi } = this.options;
      // Only an ROI needs the oriented frame size up front; otherwise sharp reads the header itself in the same call.
      this.checkSize(roi ?? headerSize(bytes));
      return await this.run(open(), roi ? await orientedSize(open()) : undefined, roi);
    } catch (err) {
      if (err instanceof SgmoeError) throw err;
      throw await decodeError(err, bytes, format, this.options.maxPixels);
    }
  }

  /**
   * Refuses a frame (or its ROI) too small for the model to judge. Sides are compared shorter to shorter, so the
   * header's size serves before EXIF orientation is applied. Undefined: a header sharp will refuse anyway.
   */
  private checkSize(region: Size | undefined): void {
    if (!region) return;
    const min = this.minSize;
    const [short, long] = [region.width, region.height].sort((a, b) => a - b);
    const [minShort, minLong] = [min.width, min.height].sort((a, b) => a - b);
    if (short < minShort || long < minLong) {
      throw new SgmoeError(
        'E_FRAME_TOO_SMALL',
        `expected a ${this.options.roi ? 'ROI' : 'frame'} of at least ${min.width}x${min.height} pixels for a ${this.spec.width}x${this.spec.height} model input, found ${region.width}x${region.height}`,
        { width: region.width, height: region.height, min },
      );
    }
  }

  /** Decoder output already at the model's size and pixel layout needs no sharp call (it costs more than the rest). */
  private fitsModel(raw: RawPixels): boolean {
    const [channels, height, width] = this.dims;
    const layout = channels === 1 ? 'gray' : 'rgb';
    return raw.width === width && raw.height === height && raw.format === layout && raw.data.length === width * height * channels;
  }

  private async run(image: Sharp, frame: Size | undefined, roi: Rect | undefined): Promise<Buffer> {
    const { fit, pad } = this.options;
    const target = { width: this.spec.width, height: this.spec.height };
    image = image.flatten({ background: pad });
    image = this.spec.colorspace === 'gray' ? image.greyscale() : image.toColourspace('srgb');
    const plan = frame ? planGeometry(frame, target, fit, roi) : ({ kind: 'resize' } as const);
    if (plan.kind === 'resize') image = image.resize(target.width, target.height, { fit, background: pad });
    if (plan.kind === 'crop-then-resize') {
      image = image.extract(region(plan.crop)).resize(target.width, target.height, { fit, background: pad });
    }
    if (plan.kind === 'resize-then-crop') {
      image = image.resize(plan.size.width, plan.size.height, { fit: 'fill' }).extract(region(plan.crop));
      if (plan.pad) image = image.extend({ ...plan.pad, background: pad });
    }
    return image.raw().toBuffer();
  }

  private normalise(pixels: Buffer, out: Float32Array, offset: number): void {
    const [channels, height, width] = this.dims;
    const plane = height * width;
    const bgr = this.spec.colorspace === 'bgr';
    for (let c = 0; c < channels; c++) {
      const lut = this.luts[c];
      const base = offset + c * plane;
      for (let i = 0, j = bgr ? 2 - c : c; i < plane; i++, j += channels) out[base + i] = lut[pixels[j]];
    }
  }
}

/** torchvision: ToTensor (uint8 / 255) then Normalize ((x - mean) / std), each step in float32. */
function normalisationTable(mean: number, std: number, invert: boolean): Float32Array {
  const f = Math.fround;
  const table = new Float32Array(256);
  for (let v = 0; v < 256; v++) table[v] = f(f(f((invert ? 255 - v : v) / 255) - f(mean)) / f(std));
  return table;
}

const region = (r: { x: number; y: number; width: number; height: number }) => ({ left: r.x, top: r.y, width: r.width, height: r.height });

/** Width and height from the header alone, without decoding (microseconds); undefined when it cannot be read. */
function headerSize(bytes: Buffer): Size | undefined {
  try {
    const { width, height } = imageSize(bytes);
    return { width, height };
  } catch {
    return undefined;
  }
}

async function orientedSize(image: Sharp): Promise<Size> {
  const meta = await image.metadata();
  return meta.autoOrient;
}

/** Decoded pixels as a sharp image (checked, row padding dropped, BGR swapped to RGB): preprocessing, the PNG kept for review and thumbnails start from it. */
export function rawPipeline(raw: RawPixels, maxPixels: number): Sharp {
  const { width, height, channels, format } = raw;
  const expectedChannels = format === 'gray' ? 1 : 3;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || channels !== expectedChannels) {
    throw new SgmoeError(
      'E_FRAME_RAW',
      `expected raw pixels with positive integer width/height and ${expectedChannels} channel(s) for ${format}, found ${width}x${height} with ${channels} channel(s)`,
    );
  }
  if (width * height > maxPixels) throw tooLarge(width, height, maxPixels);
  const row = width * channels;
  const stride = raw.stride ?? row;
  if (stride < row || raw.data.length !== stride * height) {
    throw new SgmoeError(
      'E_FRAME_RAW_SIZE',
      `expected ${stride * height} bytes for ${width}x${height} ${format} with stride ${stride}, found ${raw.data.length}`,
      { width, height, format, stride, length: raw.data.length },
    );
  }
  let data = raw.data;
  if (stride !== row || format === 'bgr') {
    // sharp wants tightly packed RGB: drop the row padding and swap BGR in one copy.
    data = Buffer.allocUnsafe(row * height);
    for (let y = 0; y < height; y++) raw.data.copy(data, y * row, y * stride, y * stride + row);
    if (format === 'bgr') for (let i = 0; i < data.length; i += 3) [data[i], data[i + 2]] = [data[i + 2], data[i]];
  }
  return sharp(data, { raw: { width, height, channels } });
}

function tooLarge(width: number, height: number, maxPixels: number): SgmoeError {
  return new SgmoeError(
    'E_FRAME_TOO_LARGE',
    `expected at most ${maxPixels} pixels, found a ${width}x${height} image (${width * height} pixels); refused before decoding`,
    { width, height, maxPixels },
  );
}

/** Turns a sharp failure into the frame error it stands for. */
async function decodeError(err: unknown, bytes: Buffer, format: ImageFormat, maxPixels: number): Promise<SgmoeError> {
  const message = err instanceof Error ? err.message : String(err);
  if (/exceeds pixel limit/i.test(message)) {
    // The pixel limit is checked on the header alone; read it again only to name the size in the message.
    const meta = await sharp(bytes, { limitInputPixels: false }).metadata();
    return tooLarge(meta.width, meta.height, maxPixels);
  }
  return new SgmoeError('E_FRAME_DECODE', `expected a complete ${format.toUpperCase()} image, found a damaged one: ${message.split('\n')[0]}`, {
    format,
  }, { cause: err });
}

function asFrameError(err: unknown): SgmoeError {
  if (err instanceof SgmoeError) return err;
  return new SgmoeError('E_FRAME_DECODE', `could not preprocess the frame: ${err instanceof Error ? err.message : String(err)}`, undefined, {
    cause: err,
  });
}

/** Names the frame in the message and details, so a log line or audit row says which one was refused. */
function aboutFrame(err: SgmoeError, frameId: string): SgmoeError {
  return new SgmoeError(err.code, `frame ${frameId}: ${err.message}`, { ...err.details, frameId }, { cause: err.cause });
}
