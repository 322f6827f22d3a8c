import { SgmoeError } from '../../errors';
import { redactText } from '../../redact';
import type { StreamInput } from '../decoder/pipeline';
import { LIVE_DEFAULTS } from '../source';
import { ptsKey, StreamSource, type Position, type StreamSourceOptions } from './stream';

export interface RtspSourceOptions extends StreamSourceOptions {
  /** RTP over the RTSP TCP connection (default: survives NAT and lossy links) or over UDP. */
  transport?: 'tcp' | 'udp';
  /** A camera silent this long ends the decoder, and the source reconnects (default 5000 ms). */
  timeoutMs?: number;
}

/**
 * `rtsp://[user:password@]host[:port]/path`: an IP camera's H.264/H.265 stream (ONVIF cameras publish one).
 * Live: a short drop-oldest queue keeps decisions about what the camera sees now, and every drop is counted;
 * a lost camera is reconnected with backoff, each reconnect counted. The credentials never leave this object:
 * the source's name, frame ids, logs and errors carry the URL as rtsp://***@host/path.
 */
export class RtspSource extends StreamSource {
  readonly kind = 'rtsp' as const;
  readonly #url: string;
  private readonly transport: 'tcp' | 'udp';
  private readonly timeoutMs: number;

  constructor(url: string, options: RtspSourceOptions = {}) {
    super(redactText(url), options, LIVE_DEFAULTS);
    this.#url = url;
    this.transport = options.transport ?? 'tcp';
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  protected input(): StreamInput {
    return { kind: 'rtsp', url: this.#url, transport: this.transport, timeoutMs: this.timeoutMs };
  }

  /**
   * A camera that takes the connection but never answers (hung) makes ffmpeg wait the timeout and then say "Invalid
   * data found", its RTSP client's word for no reply: a run that decoded nothing for that long is a timeout.
   */
  protected override named(error: SgmoeError, run: { frames: number; ms: number }): SgmoeError {
    if (error.code !== 'E_SOURCE_INVALID_DATA' || run.frames > 0 || run.ms < this.timeoutMs) return error;
    return new SgmoeError('E_SOURCE_TIMEOUT', `expected an answer from ${this.name} within ${this.timeoutMs} ms, found the connection taken and no answer`);
  }

  /** Each reconnect restarts the camera's timestamps, so the decoder run is part of the id. */
  protected frameId(position: Position, run: number): string {
    return this.nextId(`${run}@${ptsKey(position)}`);
  }
}
