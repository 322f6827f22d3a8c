import { SgmoeError } from '../../errors';
import type { InputSpec } from '../../model/manifest';
import { DecoderProcess } from '../decoder/process';
import { frameBytes, pipelineFor, type OutputSpec, type StreamInput } from '../decoder/pipeline';
import { redactText } from '../../redact';
import { DEFAULT_DECODER, type DecoderSettings } from '../decoder/settings';
import type { Frame } from '../frame';
import { planGeometry, type Size } from '../geometry';
import { preprocessOptionsSchema, type PreprocessOptions } from '../preprocess';
import { Backoff, sleep, type BackoffOptions } from '../retry';
import { BaseSource, type SourceOptions, type SourceStats } from '../source';
import type { BackpressurePolicy } from '../queue';

export interface StreamSourceOptions extends SourceOptions {
  /** The model input the decoder scales to (the package's `input`). */
  input?: InputSpec;
  /** The ROI, fit and pad colour the decoder applies (the same options as the preprocessing's). */
  preprocess?: PreprocessOptions;
  /** The device profile's decoder (default ffmpeg). */
  decoder?: DecoderSettings;
  /** Waits between decoder restarts. */
  backoff?: BackoffOptions;
}

/** A stream source's counters: the shared ones, plus decoder restarts and damaged packets the decoder concealed. */
export interface StreamSourceStats extends SourceStats {
  restarts: number;
  corrupt: number;
}

/**
 * Where a frame is in its input: its pts, and how many times the pts went back before it (recordings joined end to
 * end, a wrapped clock). Frames are ordered by segment, then pts.
 */
export interface Position {
  pts: number;
  seconds: number;
  segment: number;
}

const isAfter = (a: Position, b: Position): boolean => a.segment > b.segment || (a.segment === b.segment && a.pts > b.pts);

/** A frame's key in its decoder run: the pts, after its segment when the pts went back. */
export const ptsKey = ({ pts, segment }: Position): string => (segment ? `${segment}:${pts}` : String(pts));

/**
 * The shared half of the camera sources (rtsp, v4l2, video): a supervised decoder child writes frames already
 * cropped to the ROI and scaled to the model input, which enter preprocessing as raw pixels (no JPEG in
 * between). A decoder that fails or ends is restarted with backoff, each restart counted; a finite input
 * (`finite()`) ends the source at its end instead.
 */
export abstract class StreamSource extends BaseSource {
  /** The frames the decoder writes. */
  readonly output: OutputSpec;
  private readonly decoder: DecoderSettings;
  private readonly backoff: Backoff;
  private readonly decoderCounts = { restarts: 0, corrupt: 0 };
  private runs = 0;
  private current?: DecoderProcess;
  /** The last frame queued from a finite input: where a restarted decoder resumes. */
  private last?: Position;
  /** False once a seek landed past the resume point: restarts then decode the input from its start. */
  private seekable = true;

  constructor(displayUri: string, options: StreamSourceOptions, defaults: { capacity: number; policy: BackpressurePolicy }) {
    super(displayUri, options, defaults);
    if (!options.input) {
      throw new SgmoeError('E_CONFIG_INVALID', `expected the model input size for the decoder of source ${this.name}, found none`);
    }
    const { roi: own, fit, pad } = preprocessOptionsSchema.parse(options.preprocess ?? {});
    const { width, height, colorspace } = options.input;
    const roi = own ?? options.input.roi; // the package's default ROI unless the source names its own
    this.output = { width, height, format: colorspace === 'gray' ? 'gray' : 'rgb', roi, fit, pad: hexColour(pad) };
    this.decoder = options.decoder ?? DEFAULT_DECODER;
    this.backoff = new Backoff(options.backoff);
  }

  /** What the decoder reads; a finite input restarted after a failure is sought to near `resume`. */
  protected abstract input(resume?: Position): StreamInput;
  /** A frame's id from its position and the decoder run that produced it. */
  protected abstract frameId(position: Position, run: number): string;
  /** The failure that ended a decoder run, as this kind of source can name it better (`ms`: how long the run lasted). */
  protected named(error: SgmoeError, _run: { frames: number; ms: number }): SgmoeError {
    return error;
  }
  /** True when the input has an end (a recorded file): the source ends there instead of restarting. */
  protected finite(): boolean {
    return false;
  }

  /** The running decoder's process id (for diagnostics and tests). */
  get decoderPid(): number | undefined {
    return this.current?.pid;
  }

  override stats(): StreamSourceStats {
    return { ...super.stats(), ...this.decoderCounts };
  }

  protected async run(signal: AbortSignal): Promise<void> {
    const stopDecoder = (): void => void this.current?.stop();
    signal.addEventListener('abort', stopDecoder);
    try {
      while (!signal.aborted) {
        const run = ++this.runs;
        if (run > 1) this.decoderCounts.restarts++;
        const started = Date.now();
        const { error, frames } = await this.decode(run);
        if (signal.aborted) return;
        if (!error && this.finite()) return;
        const failure = error
          ? this.named(error, { frames, ms: Date.now() - started })
          : new SgmoeError('E_SOURCE_STREAM', `expected the stream from ${this.name} to go on, found its end`);
        // Without a decoder, or with a file that yields nothing, another start cannot do better.
        if (failure.details?.spawnError || (this.finite() && frames === 0)) throw failure;
        this.reportError(failure);
        await sleep(this.backoff.next(), signal);
      }
    } finally {
      signal.removeEventListener('abort', stopDecoder);
    }
  }

  /** One decoder run: its frames into the queue; the failure that ended it (none at a clean end of input). */
  private async decode(run: number): Promise<{ error?: SgmoeError; frames: number }> {
    // Frames up to `resume` were queued by an earlier run. A seek by timestamp is only unambiguous before the
    // first time the timestamps go back; past it the input is decoded from its start.
    const resume = this.last;
    const seek = resume && resume.segment === 0 && this.seekable ? resume : undefined;
    const decoder = new DecoderProcess({
      pipeline: pipelineFor(this.decoder, this.input(seek), this.output),
      frameBytes: frameBytes(this.output),
      source: this.name,
      redact: redactText,
      onCorrupt: (text) => {
        this.decoderCounts.corrupt++;
        this.log.debug({ text }, 'corrupt data in the stream');
      },
      logger: this.log,
    });
    this.current = decoder;
    const { width, height, format, roi } = this.output;
    let frames = 0;
    let here: Position | undefined;
    let reached = !resume;
    let overshot: number | undefined;
    try {
      for await (const { pts, seconds, data } of decoder.frames()) {
        frames++;
        // Timestamps that go back start a new segment: ids stay unique, and the order of frames is known.
        here = { pts, seconds, segment: here && pts <= here.pts ? here.segment + 1 : (here?.segment ?? 0) };
        if (resume && !isAfter(here, resume)) {
          reached = true; // queued before the restart: not queued twice
          continue;
        }
        if (!reached) {
          overshot = pts;
          break;
        }
        this.backoff.reset();
        const frame: Frame = {
          id: this.frameId(here, run),
          source: this.name,
          receivedAt: Date.now(),
          raw: { data, width, height, channels: format === 'gray' ? 1 : 3, format, prepared: true },
          // The part of the camera's picture the frame was made from: the preprocessing refuses one too small.
          meta: { pts, ptsSeconds: seconds, region: roi ? { width: roi.width, height: roi.height } : decoder.sourceSize },
        };
        await this.emit(frame);
        if (this.finite()) this.last = here;
      }
    } catch (err) {
      await decoder.stop();
      throw err;
    }
    if (overshot !== undefined) {
      // The seek landed past the resume point: the frames in between would be lost.
      this.seekable = false;
      await decoder.stop();
      const error = `expected the resumed decoder of ${this.name} to start at or before pts ${resume!.pts}, found it at ${overshot}; decoding again from the start`;
      return { error: new SgmoeError('E_SOURCE_DECODER', error), frames };
    }
    const { error } = await decoder.ended();
    return { error: error && (this.roiOutside(decoder.sourceSize) ?? error), frames };
  }

  /** ffmpeg's crop fails on an ROI outside the picture: E_FRAME_ROI, as the preprocessing says for other sources. */
  private roiOutside(picture: Size | undefined): SgmoeError | undefined {
    const { roi, width, height, fit } = this.output;
    if (!roi || !picture) return undefined;
    try {
      planGeometry(picture, { width, height }, fit, roi);
      return undefined;
    } catch (err) {
      const { code, message, details } = err as SgmoeError;
      return new SgmoeError(code, `source ${this.name}: ${message}`, details);
    }
  }
}

function hexColour(pad: string | { r: number; g: number; b: number }): string {
  if (typeof pad !== 'string') return `#${[pad.r, pad.g, pad.b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
  return pad.length === 4 ? `#${[...pad.slice(1)].map((c) => c + c).join('')}` : pad;
}
