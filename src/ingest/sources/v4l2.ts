import type { CaptureFormat, StreamInput } from '../decoder/pipeline';
import { LIVE_DEFAULTS } from '../source';
import { ptsKey, StreamSource, type Position, type StreamSourceOptions } from './stream';

export interface V4l2SourceOptions extends StreamSourceOptions {
  /** Size, rate and pixel format asked of the camera (each defaults to the camera's own). */
  capture?: CaptureFormat;
}

/**
 * `v4l2:/dev/videoN`: a local USB (UVC) or CSI camera through Video4Linux2. Live like an IP camera: drop-oldest,
 * and a camera that goes away (unplugged, busy) is reopened with backoff, each restart counted.
 */
export class V4l2Source extends StreamSource {
  readonly kind = 'v4l2' as const;
  private readonly capture: CaptureFormat;

  constructor(
    readonly device: string,
    options: V4l2SourceOptions = {},
  ) {
    super(`v4l2:${device}`, options, LIVE_DEFAULTS);
    this.capture = options.capture ?? {};
  }

  protected input(): StreamInput {
    return { kind: 'v4l2', device: this.device, capture: this.capture };
  }

  protected frameId(position: Position, run: number): string {
    return this.nextId(`${run}@${ptsKey(position)}`);
  }
}
