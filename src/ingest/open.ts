import { SgmoeError } from '../errors';
import { redactText } from '../redact';
import type { FrameSource } from './source';
import { DirSource, type DirSourceOptions } from './sources/dir';
import { HttpSnapshotSource, type HttpSourceOptions } from './sources/http';
import { MjpegSource, type MjpegSourceOptions } from './sources/mjpeg';
import { MqttSource, type MqttSourceOptions } from './sources/mqtt';
import { RtspSource, type RtspSourceOptions } from './sources/rtsp';
import { V4l2Source, type V4l2SourceOptions } from './sources/v4l2';
import { VideoSource, type VideoSourceOptions } from './sources/video';

/** Options of every URI scheme together; each source reads its own. `mqtt` is needed for `mqtt:` URIs. */
export type OpenSourceOptions = DirSourceOptions &
  HttpSourceOptions &
  MjpegSourceOptions &
  RtspSourceOptions &
  V4l2SourceOptions &
  VideoSourceOptions &
  Partial<Pick<MqttSourceOptions, 'mqtt' | 'qos' | 'connectOptions'>>;

/** Sources that `--once` ends: a folder's current files, a recorded video. Cameras, streams and topics have no end. */
export function endsWithOnce(uri: string): boolean {
  return /^(dir|video):/i.test(uri);
}

/**
 * The source a URI names (docs/DESIGN.md): `dir:PATH`, `http(s)://…`, `mjpeg+http(s)://…`, `mqtt:TOPIC`, and the
 * decoded cameras `rtsp://…`, `v4l2:/dev/videoN`, `video:PATH` (these need `input`, the model input size).
 */
export function openSource(uri: string, options: OpenSourceOptions = {}): FrameSource {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1].toLowerCase();
  const rest = uri.slice((scheme?.length ?? 0) + 1);
  switch (scheme) {
    case 'dir':
      if (rest) return new DirSource(rest, options);
      break;
    case 'http':
    case 'https':
      return new HttpSnapshotSource(uri, options);
    case 'mjpeg+http':
    case 'mjpeg+https':
      return new MjpegSource(uri, options);
    case 'mqtt':
      if (!rest) break;
      if (!options.mqtt) {
        throw new SgmoeError('E_CONFIG_INVALID', `expected an MQTT client or broker URL for source ${uri}, found none`);
      }
      return new MqttSource(rest, { ...options, mqtt: options.mqtt });
    case 'rtsp':
      return new RtspSource(uri, options);
    case 'v4l2':
      if (rest) return new V4l2Source(rest, options);
      break;
    case 'video':
      if (rest) return new VideoSource(rest, options);
      break;
  }
  throw new SgmoeError(
    'E_SOURCE_URI',
    `expected a source URI dir:PATH, http(s)://…, mjpeg+http(s)://…, mqtt:TOPIC, rtsp://…, v4l2:/dev/videoN or video:PATH, found ${JSON.stringify(redactText(uri))}`,
  );
}
