import koffi from 'koffi';
import type { Size } from './geometry';

/** Decoded pixels, interleaved 8-bit gray or RGB. */
export interface DecodedJpeg extends Size {
  data: Buffer;
}

export interface TurboJpeg {
  /**
   * Decodes with libjpeg-turbo's DCT scaling to the smallest size of 1/8, 1/4, 1/2 or 1 that still covers `atLeast`
   * (what Pillow's `draft` does): the IDCT is skipped for the dropped frequencies. Undefined when libjpeg-turbo
   * refuses the image or warns about it (damaged, CMYK, ...), or when it has more than `maxPixels`: the caller's
   * general path then decides.
   */
  decodeScaled(bytes: Buffer, atLeast: Size, gray: boolean, maxPixels: number): DecodedJpeg | undefined;
}

const TJPF_RGB = 0;
const TJPF_GRAY = 6;
/** A warning (damaged or truncated data) fails the decode, like sharp's failOn 'warning'. */
const TJFLAG_STOPONWARNING = 8192;
const FACTORS = [8, 4, 2, 1];

let loaded: TurboJpeg | null | undefined;

/**
 * libjpeg-turbo's TurboJPEG API (Debian/Ubuntu/JetPack: libturbojpeg0), called through koffi, or undefined where
 * the library is not installed. Calls are synchronous on the calling thread: a DCT-scaled camera frame takes
 * well under a millisecond, less than handing the frame to a worker thread and back.
 */
export function turboJpeg(): TurboJpeg | undefined {
  if (loaded === undefined) {
    try {
      loaded = bind(koffi.load('libturbojpeg.so.0'));
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}

function bind(lib: ReturnType<typeof koffi.load>): TurboJpeg {
  const init = lib.func('void *tjInitDecompress()');
  const header = lib.func('int tjDecompressHeader3(void *handle, const uint8_t *buf, unsigned long size, _Out_ int *width, _Out_ int *height, _Out_ int *subsamp, _Out_ int *colorspace)');
  const decompress = lib.func('int tjDecompress2(void *handle, const uint8_t *buf, unsigned long size, _Out_ uint8_t *dst, int width, int pitch, int height, int pixelFormat, int flags)');
  const handle = init();
  if (!handle) throw new Error('tjInitDecompress failed');
  const w = [0];
  const h = [0];
  const unused = [0];
  return {
    decodeScaled(bytes, atLeast, gray, maxPixels) {
      if (header(handle, bytes, bytes.length, w, h, unused, unused) !== 0) return undefined;
      const [width, height] = [w[0], h[0]];
      if (width * height > maxPixels) return undefined;
      const factor = FACTORS.find((f) => Math.ceil(width / f) >= atLeast.width && Math.ceil(height / f) >= atLeast.height) ?? 1;
      const size = { width: Math.ceil(width / factor), height: Math.ceil(height / factor) };
      const data = Buffer.allocUnsafe(size.width * size.height * (gray ? 1 : 3));
      const status = decompress(handle, bytes, bytes.length, data, size.width, 0, size.height, gray ? TJPF_GRAY : TJPF_RGB, TJFLAG_STOPONWARNING);
      return status === 0 ? { data, ...size } : undefined;
    },
  };
}
