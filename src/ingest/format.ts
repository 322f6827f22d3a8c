/** The encoded formats a frame may arrive in (issue 4); everything else is refused before sharp sees it. */
export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'tiff' | 'gif';

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const ascii = (b: Buffer, start: number, end: number): string => b.toString('latin1', start, end);

const ACCEPTED: ReadonlyArray<[ImageFormat, (b: Buffer) => boolean]> = [
  ['jpeg', (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff],
  ['png', (b) => b.subarray(0, 8).equals(PNG_MAGIC)],
  ['gif', (b) => ascii(b, 0, 4) === 'GIF8'],
  ['webp', (b) => ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP'],
  ['tiff', (b) => ['II*\0', 'MM\0*'].includes(ascii(b, 0, 4))],
];

/** Formats people do send that we refuse, named so the error message says what was found. */
const REFUSED: ReadonlyArray<[string, (b: Buffer) => boolean]> = [
  ['a BMP image', (b) => ascii(b, 0, 2) === 'BM'],
  ['a PDF document', (b) => ascii(b, 0, 5) === '%PDF-'],
  ['an SVG/XML document', (b) => /^\s*<(\?xml|svg)/i.test(ascii(b, 0, 64))],
  ['a HEIF/AVIF image', (b) => ascii(b, 4, 8) === 'ftyp'],
];

/** The accepted format the bytes start with, by magic number; undefined for anything else. */
export function sniffFormat(bytes: Buffer): ImageFormat | undefined {
  return ACCEPTED.find(([, test]) => test(bytes))?.[0];
}

/** What unaccepted bytes look like, for an error message: a known format, text, or the first bytes in hex. */
export function describeBytes(bytes: Buffer): string {
  const known = REFUSED.find(([, test]) => test(bytes));
  if (known) return known[0];
  const head = bytes.subarray(0, 16);
  // Text (a proxy's HTML error page, a log line) is the usual suspect: show it readably.
  if (head.every((c) => c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127))) {
    return `text starting ${JSON.stringify(head.toString('latin1'))}`;
  }
  return `unknown bytes starting ${head.toString('hex')}`;
}
