/** One part of a multipart/x-mixed-replace stream: its headers (lower-case names) and body. */
export interface Part {
  headers: Record<string, string>;
  body: Buffer;
}

const CRLF = Buffer.from('\r\n');
const CRLF2 = Buffer.from('\r\n\r\n');
/** Part headers longer than this are junk. */
const MAX_HEADER_BYTES = 16 * 1024;

/** The boundary of a `multipart/x-mixed-replace; boundary=…` content type, without the leading dashes. */
export function boundaryOf(contentType: string | null): string | undefined {
  const match = /^multipart\/x-mixed-replace\s*;.*boundary="?([^";]+)"?/i.exec(contentType ?? '');
  // Some cameras put the dashes in the header as well.
  return match?.[1].trim().replace(/^--/, '');
}

/**
 * Incremental parser of an MJPEG stream: `--boundary` line, headers, blank line, body. With a Content-Length
 * the part is complete as soon as its body is in (no waiting for the next frame's boundary); without one, it
 * ends at the next boundary. Junk (bytes where a boundary or headers should be, a part over `maxPartBytes`)
 * is reported as a problem and skipped up to the next boundary, so the stream resynchronises.
 */
export class MultipartParser {
  private readonly delimiter: Buffer;
  private buffer: Buffer = Buffer.alloc(0);
  private state: 'boundary' | 'headers' | 'body' = 'boundary';
  /** Headers and Content-Length of the part whose body is being read. */
  private headers: Record<string, string> = {};
  private contentLength?: number;
  /** Where the next boundary search resumes: bytes before it were already searched. */
  private searched = 0;
  /** Skipping up to the next boundary after a reported problem: the skipped bytes are not reported again. */
  private resyncing = false;

  constructor(
    boundary: string,
    private readonly maxPartBytes = 16 * 2 ** 20,
  ) {
    this.delimiter = Buffer.from(`--${boundary}`, 'latin1');
  }

  push(chunk: Buffer): { parts: Part[]; problems: string[] } {
    const parts: Part[] = [];
    const problems: string[] = [];
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (this.step(parts, problems));
    return { parts, problems };
  }

  /** Advances by one state; false when more bytes are needed. */
  private step(parts: Part[], problems: string[]): boolean {
    const skip = (problem: string): true => {
      problems.push(problem);
      this.state = 'boundary';
      this.resyncing = true;
      return true;
    };
    if (this.state === 'boundary') {
      const next = this.nextBoundary(problems);
      if (!next) return false;
      if (!this.resyncing && next.at > 0 && this.buffer.toString('latin1', 0, next.at).trim() !== '') {
        problems.push(`expected a boundary, found ${next.at} bytes of something else; skipped`);
      }
      this.resyncing = false;
      this.buffer = this.buffer.subarray(next.after);
      this.state = 'headers';
      return true;
    }
    if (this.state === 'headers') {
      const end = this.buffer.subarray(0, 2).equals(CRLF) ? -2 : this.buffer.indexOf(CRLF2);
      // Junk instead of headers: a boundary comes before the blank line.
      const boundary = (end === -1 ? this.buffer : this.buffer.subarray(0, Math.max(0, end))).indexOf(this.delimiter);
      if (boundary >= 0) return skip('expected part headers ending in a blank line, found a boundary first; skipped');
      if (end === -1) {
        if (this.buffer.length <= MAX_HEADER_BYTES) return false;
        return skip(`expected part headers of at most ${MAX_HEADER_BYTES} bytes, found more; skipped`);
      }
      this.headers = parseHeaders(this.buffer.toString('latin1', 0, Math.max(0, end)));
      this.buffer = this.buffer.subarray(end + 4);
      const declared = this.headers['content-length'];
      this.contentLength = declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : undefined;
      if ((this.contentLength ?? 0) > this.maxPartBytes) {
        return skip(`expected a part of at most ${this.maxPartBytes} bytes, found Content-Length ${this.contentLength}; skipped`);
      }
      this.state = 'body';
      this.searched = 0;
      return true;
    }
    return this.body(parts, problems);
  }

  private body(parts: Part[], problems: string[]): boolean {
    const headers = this.headers;
    if (this.contentLength !== undefined) {
      if (this.buffer.length < this.contentLength) return false;
      parts.push({ headers, body: this.buffer.subarray(0, this.contentLength) });
      this.buffer = this.buffer.subarray(this.contentLength);
      this.state = 'boundary';
      return true;
    }
    const next = this.nextBoundary(problems);
    if (!next) return false;
    // The CRLF before a boundary belongs to the boundary.
    const end = next.at >= 2 && this.buffer.subarray(next.at - 2, next.at).equals(CRLF) ? next.at - 2 : next.at;
    if (end > this.maxPartBytes) problems.push(`expected a part of at most ${this.maxPartBytes} bytes, found ${end}; skipped`);
    else parts.push({ headers, body: this.buffer.subarray(0, end) });
    this.buffer = this.buffer.subarray(next.after);
    this.state = 'headers';
    return true;
  }

  /** The next complete boundary line (where it starts, where the line after it starts), or undefined. */
  private nextBoundary(problems: string[]): { at: number; after: number } | undefined {
    const at = this.buffer.indexOf(this.delimiter, this.searched);
    const lineEnd = at < 0 ? -1 : this.buffer.indexOf(0x0a, at + this.delimiter.length);
    if (lineEnd >= 0) {
      this.searched = 0;
      return { at, after: lineEnd + 1 };
    }
    if (this.buffer.length > this.maxPartBytes) {
      if (!this.resyncing) problems.push(`expected a boundary within ${this.maxPartBytes} bytes, found none; skipped`);
      this.buffer = this.buffer.subarray(this.buffer.length - this.delimiter.length);
      this.state = 'boundary';
      this.resyncing = true;
      this.searched = 0;
      return undefined;
    }
    this.searched = Math.max(0, (at < 0 ? this.buffer.length : at) - this.delimiter.length);
    return undefined;
  }
}

function parseHeaders(text: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}
