import { SgmoeError } from '../../errors';
import type { Frame, RawPixels } from '../frame';
import { BaseSource, QUEUED_DEFAULTS, type SourceOptions } from '../source';

/** What an SDK user hands over: an encoded image, decoded pixels, or a frame they built (id, meta...). */
export type PushInput = Buffer | RawPixels | (Partial<Frame> & Pick<Frame, 'bytes' | 'raw'>);

/**
 * For SDK users who already hold the pixels. `push` resolves once the frame is queued (under the default
 * `block` policy it waits for room, which is the backpressure); `end` finishes the stream.
 */
export class PushSource extends BaseSource {
  readonly kind = 'push' as const;
  private ended = false;
  private finish: () => void = () => {};

  constructor(name = 'push', options: Omit<SourceOptions, 'name'> = {}) {
    super(name, options, QUEUED_DEFAULTS);
  }

  /** Queues one frame and returns its id. */
  async push(input: PushInput): Promise<string> {
    if (this.ended) throw new SgmoeError('E_SOURCE_STOPPED', `expected source ${this.name} to be open, found it ended`);
    const given = Buffer.isBuffer(input) ? { bytes: input } : 'data' in input ? { raw: input } : input;
    const frame: Frame = { receivedAt: Date.now(), ...given, id: given.id ?? this.nextId(), source: this.name };
    await this.emit(frame);
    return frame.id;
  }

  /** No more frames: the iteration ends once the queued ones are consumed. */
  end(): void {
    this.ended = true;
    this.finish();
  }

  override async stop(): Promise<void> {
    this.end();
    await super.stop();
  }

  protected run(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      this.finish = resolve;
      if (this.ended || signal.aborted) resolve();
      signal.addEventListener('abort', () => resolve());
    });
  }
}
