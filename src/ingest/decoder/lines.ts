import { SgmoeError } from '../../errors';
import type { DecoderPipeline } from './pipeline';

/**
 * What one line of a decoder's log says: a frame went out (with its pts), the stream has damage, a named failure,
 * or an error the decoder reported that names no known failure (kept to say why the decoder exited). ffmpeg also
 * describes its input before the first frame: the picture size of each video stream, then "Stream mapping:".
 */
export type DecoderLine =
  | { kind: 'frame'; pts: number; seconds: number }
  | { kind: 'input'; width: number; height: number }
  | { kind: 'described' }
  | { kind: 'corrupt'; text: string }
  | { kind: 'failure'; error: SgmoeError }
  | { kind: 'error'; text: string }
  | { kind: 'other' };

// "[info]   Stream #0:0[0x100]: Video: h264 (High), ..., yuv420p(progressive), 1920x1080 [SAR 1:1 DAR 1:1], 25 fps, ..."
const FFMPEG_VIDEO_STREAM = /^\[info\]\s+Stream #\d+:\d+.*?: Video: .*?, (\d+)x(\d+)\b/;

// GStreamer's identity: "... pts: 0:00:00.040000000, ..."
const GST_FRAME = /last-message = chain .*\bpts: (\d+):(\d\d):(\d\d)\.(\d{9})/;

/** Damage the decoder conceals and goes on after: each such line is one corrupt packet or slice. */
const CORRUPT = [
  /error while decoding/i,
  /Invalid NAL unit/i,
  /non-existing PPS/i,
  /decode_slice_header error/i,
  /Packet corrupt/i,
  /corrupt (input|decoded frame)/i,
  /concealing \d+ DC/i,
  /RTP: (missed|PT=\d+: bad cseq)/i,
  /Invalid (level|mb|MB)/i,
  /\bmmco\b|co located POCs unavailable|reference picture missing|Missing reference picture/i,
  /number of reference frames .* exceeds max/i,
  /illegal short term buffer|out of range intra chroma pred mode|left block unavailable|top block unavailable/i,
  /cabac decode of qscale diff failed|bytestream -?\d+/i,
  /mjpeg.*(EOI missing|overread|marker)/i,
];

/**
 * Failures that end the decoder, named (stable code, what was expected and what was found). The source's
 * display name is given so messages name the source without its credentials.
 */
const FAILURES: ReadonlyArray<[RegExp, (source: string, line: string) => SgmoeError]> = [
  [
    /401 Unauthorized|authorization failed|Unauthorized/i,
    (s) => new SgmoeError('E_SOURCE_AUTH', `expected the camera ${s} to accept the configured credentials, found 401 Unauthorized`, { status: 401 }),
  ],
  [/Connection refused/i, (s) => new SgmoeError('E_SOURCE_UNREACHABLE', `expected to reach ${s}, found the connection refused`)],
  [
    /Connection timed out|timed out|Operation timed out/i,
    (s) => new SgmoeError('E_SOURCE_TIMEOUT', `expected data from ${s} in time, found none before the timeout`),
  ],
  [/404 Not Found|No such file or directory|Could not open|No such device/i, (s) => new SgmoeError('E_SOURCE_NOT_FOUND', `expected ${s} to exist, found nothing there`)],
  [
    /Invalid data found when processing input|could not find codec parameters|moov atom not found|Could not determine type of stream|not enough data|no decoder/i,
    (s, line) => new SgmoeError('E_SOURCE_INVALID_DATA', `expected a video stream from ${s}, found data the decoder cannot read (${line})`),
  ],
  [/Device or resource busy/i, (s) => new SgmoeError('E_SOURCE_UNREACHABLE', `expected ${s} to be free, found it in use by another program`)],
];

/**
 * Reads ffmpeg's framecrc output (fd 4): a header that names the time base ("#tb 0: 1/12800"), then one line per
 * frame, "stream, dts, pts, duration, size, checksum". Returns each frame line's pts; header lines give undefined.
 */
export function framecrcReader(): (line: string) => { pts: number; seconds: number } | undefined {
  let [num, den] = [NaN, NaN];
  return (line) => {
    if (line.startsWith('#')) {
      const tb = /^#tb 0: (\d+)\/(\d+)/.exec(line);
      if (tb) [num, den] = [Number(tb[1]), Number(tb[2])];
      return undefined;
    }
    const fields = line.split(',', 3);
    if (fields.length < 3) return undefined;
    const pts = Number(fields[2]);
    return { pts, seconds: (pts * num) / den };
  };
}

/** Reads one line of the decoder's log; `redact` strips credentials from any text that goes into an error. */
export function readDecoderLine(dialect: DecoderPipeline['dialect'], line: string, source: string, redact: (text: string) => string): DecoderLine {
  if (dialect === 'ffmpeg') {
    const input = FFMPEG_VIDEO_STREAM.exec(line);
    if (input) return { kind: 'input', width: Number(input[1]), height: Number(input[2]) };
    if (line === '[info] Stream mapping:') return { kind: 'described' };
    if (!/\[(error|fatal|warning)\]/.test(line)) return { kind: 'other' };
  } else {
    const frame = GST_FRAME.exec(line);
    if (frame) {
      const [h, m, s, ns] = frame.slice(1).map(Number);
      const seconds = h * 3600 + m * 60 + s + ns / 1e9;
      return { kind: 'frame', pts: Math.round(seconds * 1e9), seconds };
    }
    if (!/ERROR|WARNING|error|Error/.test(line)) return { kind: 'other' };
  }
  // The text without ffmpeg's "[context @ 0x...] [level] " prefix.
  const text = redact(line.replace(/^(\[[^\]]* @ 0x[0-9a-f]+\] )?(\[(error|fatal|warning)\] )?/, '').trim());
  if (CORRUPT.some((p) => p.test(line))) return { kind: 'corrupt', text };
  const failure = FAILURES.find(([pattern]) => pattern.test(line));
  if (failure) return { kind: 'failure', error: failure[1](source, text) };
  return /\[(error|fatal)\]|ERROR/.test(line) ? { kind: 'error', text } : { kind: 'other' };
}

