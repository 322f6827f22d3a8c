import { SgmoeError } from '../errors';
import type { FrameSource } from './source';
import { DirSource, type DirSourceOptions } from './sources/dir';
import { HttpSnapshotSource, type HttpSourceOptions } from './sources/http';
import { MjpegSource, type MjpegSourceOptions } from './sources/mjpeg';
import { MqttSource, type MqttSourceOptions } from './sources/mqtt';

/** Options of every URI scheme together; each source reads its own. `mqtt` is needed for `mqtt:` URIs. */
export type OpenSourceOptions = DirSourceOptions &
  HttpSourceOptions &
  MjpegSourceOptions &
  Partial<Pick<MqttSourceOptions, 'mqtt' | 'qos' | 'connectOptions'>>;

/** The source a URI names (DESIGN.md): `dir:PATH`, `http(s)://…`, `mjpeg+http(s)://…`, `mqtt:TOPIC`. */
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
  }
  throw new SgmoeError(
    'E_SOURCE_URI',
    `expected a source URI dir:PATH, http(s)://…, mjpeg+http(s)://… or mqtt:TOPIC, found ${JSON.stringify(uri)}`,
  );
}
