import type { StreamInput } from '../decoder/pipeline';
import { LIVE_DEFAULTS, QUEUED_DEFAULTS } from '../source';
import { ptsKey, StreamSource, type Position, type StreamSourceOptions } from './stream';

export interface VideoSourceOptions extends StreamSourceOptions {
  /** `sgmoe run --once`: every frame of the file is decided exactly once, then the source ends. */
  once?: boolean;
  /**
   * `native` plays the file at its own frame rate, like the camera that recorded it (frames the node cannot
   * keep up with are dropped, counted); `fast` goes as fast as the node takes frames, dropping none.
   * Default: fast with `once`, native otherwise.
   */
  rate?: 'native' | 'fast';
}

/**
 * `video:PATH`: a recorded file (MP4, MKV, MPEG-TS with H.264, H.265, MJPEG, ...) replayed through the same
 * decoder as a live camera, to tune an ROI or a threshold on yesterday's shift. Frame ids are the file's own
 * timestamps (`video:PATH@pts`; `video:PATH@k:pts` after the k-th time they go back, as in recordings joined end
 * to end), the same in every replay. A decoder that crashes mid-file is restarted where it stopped, so no frame
 * is skipped or decided twice.
 */
export class VideoSource extends StreamSource {
  readonly kind = 'video' as const;
  private readonly realtime: boolean;

  constructor(
    readonly path: string,
    options: VideoSourceOptions = {},
  ) {
    const realtime = (options.rate ?? (options.once ? 'fast' : 'native')) === 'native';
    super(`video:${path}`, options, realtime ? LIVE_DEFAULTS : QUEUED_DEFAULTS);
    this.realtime = realtime;
  }

  protected input(resume?: Position): StreamInput {
    return { kind: 'video', path: this.path, realtime: this.realtime, startPts: resume };
  }

  protected frameId(position: Position): string {
    return `${this.name}@${ptsKey(position)}`;
  }

  protected override finite(): boolean {
    return true;
  }
}
