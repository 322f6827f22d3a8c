import { SgmoeError } from '../../errors';
import type { Fit, Rect } from '../geometry';
import type { DecoderSettings } from './settings';

/** What a decoder reads: a network camera, a local USB camera, or a recorded file. */
export type StreamInput =
  | { kind: 'rtsp'; url: string; transport: 'tcp' | 'udp'; timeoutMs: number }
  | { kind: 'v4l2'; device: string; capture: CaptureFormat }
  | { kind: 'video'; path: string; realtime: boolean; startPts?: { pts: number; seconds: number } };

/** What a USB camera is asked for; each field left out keeps the camera's own default. */
export interface CaptureFormat {
  width?: number;
  height?: number;
  fps?: number;
  /** V4L2 pixel format as ffmpeg names it: mjpeg, yuyv422, nv12, ... */
  pixelFormat?: string;
}

/** The frames the decoder writes: the ROI of each picture brought to the model's size and pixel format. */
export interface OutputSpec {
  width: number;
  height: number;
  format: 'gray' | 'rgb';
  roi?: Rect;
  fit: Fit;
  /** Colour of `contain` borders, #rrggbb. */
  pad: string;
}

/**
 * A child process to run: raw frames come out on fd 3, and one text line per frame gives its pts: ffmpeg writes
 * them on fd 4 (its framecrc muxer), GStreamer in its log on stdout (identity's last-message).
 */
export interface DecoderPipeline {
  command: string;
  args: string[];
  /** The frame timestamps and the decoder's own log are read from this line format. */
  dialect: 'ffmpeg' | 'gstreamer';
}

/** How far before the last frame a resumed file is sought: longer than a camera's keyframe interval (1-4 s). */
const RESUME_MARGIN_S = 5;

export const frameBytes = (o: OutputSpec): number => o.width * o.height * (o.format === 'gray' ? 1 : 3);

/** The pipeline a device's decoder runs for one input. */
export function pipelineFor(settings: DecoderSettings, input: StreamInput, output: OutputSpec): DecoderPipeline {
  return settings.kind === 'ffmpeg' ? ffmpegPipeline(settings, input, output) : jetsonPipeline(settings.command, input, output);
}

function ffmpegPipeline(settings: Extract<DecoderSettings, { kind: 'ffmpeg' }>, input: StreamInput, output: OutputSpec): DecoderPipeline {
  const args = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'level+info'];
  if (settings.hwaccel) args.push('-hwaccel', settings.hwaccel);
  if (input.kind === 'rtsp') {
    // -timeout: socket I/O in microseconds, so a silent camera ends the decoder and the source reconnects.
    args.push('-rtsp_transport', input.transport, '-timeout', String(input.timeoutMs * 1000), '-fflags', 'nobuffer', '-i', input.url);
  } else if (input.kind === 'v4l2') {
    const { width, height, fps, pixelFormat } = input.capture;
    args.push('-f', 'v4l2');
    if (width && height) args.push('-video_size', `${width}x${height}`);
    if (fps) args.push('-framerate', String(fps));
    if (pixelFormat) args.push('-input_format', pixelFormat);
    args.push('-i', input.device);
  } else {
    if (input.realtime) args.push('-re');
    // A restarted decoder resumes where the last one stopped; -copyts keeps the file's own timestamps as frame ids.
    // -seek_timestamp: the position is the file's own timestamp, not one after its start time (an MPEG-TS starts at
    // 1.4 s or later). -noaccurate_seek: with -copyts ffmpeg's trim adds the start time again and drops frames;
    // the source skips the frames it already queued instead. A seek lands on a keyframe, in MPEG-TS often the one
    // after the position, hence the margin; a seek that still lands past it is caught by the source.
    if (input.startPts) {
      const from = Math.max(0, input.startPts.seconds - RESUME_MARGIN_S);
      args.push('-seek_timestamp', '1', '-noaccurate_seek', '-ss', from.toFixed(6));
    }
    args.push('-copyts', '-i', input.path);
  }
  // The filtered frames are split in two outputs: the pixels (rawvideo, fd 3) and one framecrc line per frame with
  // its pts in the input stream's time base (fd 4). Both are written once per frame, where showinfo's log line took
  // about 20 writes per frame (one per fragment) that the node had to wake up for, parse and mostly throw away.
  args.push('-filter_complex', `[0:v:0]${ffmpegFilters(output)},split=2[stamps][frames]`);
  // The stamps' dts is the frame's number (far below any pts): ffmpeg's muxer forces dts to increase, so were it the
  // pts, frames whose timestamps go back (recordings joined end to end) would all carry the last pts before the jump.
  args.push('-map', '[stamps]', '-fps_mode', 'passthrough', '-enc_time_base', '-1', '-c:v', 'rawvideo', '-bsf:v', 'setts=dts=N-1000000000');
  args.push('-f', 'framecrc', 'pipe:4');
  args.push('-map', '[frames]', '-fps_mode', 'passthrough', '-f', 'rawvideo', 'pipe:3');
  return { command: settings.command, args, dialect: 'ffmpeg' };
}

/** crop (ROI) -> scale to the model size with the fit -> pixel format. */
export function ffmpegFilters(o: OutputSpec): string {
  const filters: string[] = [];
  if (o.roi) filters.push(`crop=${o.roi.width}:${o.roi.height}:${o.roi.x}:${o.roi.y}`);
  // area: an average over each output pixel's footprint, like sharp's and Pillow's reductions.
  const scale = `scale=${o.width}:${o.height}:flags=area`;
  if (o.fit === 'fill') filters.push(scale);
  if (o.fit === 'cover') filters.push(`${scale}:force_original_aspect_ratio=increase`, `crop=${o.width}:${o.height}`);
  if (o.fit === 'contain') {
    filters.push(`${scale}:force_original_aspect_ratio=decrease`, `pad=${o.width}:${o.height}:(ow-iw)/2:(oh-ih)/2:color=0x${o.pad.slice(1)}`);
  }
  filters.push(`format=${o.format === 'gray' ? 'gray' : 'rgb24'}`);
  return filters.join(',');
}

/**
 * JetPack's hardware path: NVDEC (nvv4l2decoder) or NVJPG (nvjpegdec) decode into NVMM memory, nvvidconv crops
 * the ROI and scales on the VIC, and only the model-sized frame is copied out. `identity silent=false` with
 * gst-launch's -v prints one line per frame with its pts.
 */
function jetsonPipeline(command: string, input: StreamInput, output: OutputSpec): DecoderPipeline {
  if (output.fit !== 'fill') {
    throw new SgmoeError('E_CONFIG_INVALID', `expected fit "fill" with the Jetson GStreamer decoder (nvvidconv only stretches), found "${output.fit}"`);
  }
  let head: string;
  if (input.kind === 'rtsp') {
    const url = new URL(input.url);
    const auth = url.username ? ` user-id=${quote(decodeURIComponent(url.username))} user-pw=${quote(decodeURIComponent(url.password))}` : '';
    url.username = '';
    url.password = '';
    const protocols = input.transport === 'tcp' ? 'tcp' : 'udp';
    head = `rtspsrc location=${quote(url.toString())} protocols=${protocols} latency=200 tcp-timeout=${input.timeoutMs * 1000}${auth} ! parsebin ! nvv4l2decoder`;
  } else if (input.kind === 'v4l2') {
    const { width, height, fps, pixelFormat } = input.capture;
    const caps = [width && `width=${width}`, height && `height=${height}`, fps && `framerate=${fps}/1`].filter(Boolean).join(',');
    const mjpeg = pixelFormat === undefined || pixelFormat === 'mjpeg';
    head = `v4l2src device=${quote(input.device)} ! ${mjpeg ? 'image/jpeg' : 'video/x-raw'}${caps ? `,${caps}` : ''} ! ${mjpeg ? 'nvjpegdec ! video/x-raw' : 'nvvidconv'}`;
  } else {
    if (input.startPts) throw new SgmoeError('E_CONFIG_INVALID', 'the Jetson GStreamer decoder cannot resume a file at a timestamp');
    head = `filesrc location=${quote(input.path)} ! parsebin ! nvv4l2decoder`;
  }
  const crop = output.roi ? ` left=${output.roi.x} top=${output.roi.y} right=${output.roi.x + output.roi.width} bottom=${output.roi.y + output.roi.height}` : '';
  const size = `width=${output.width},height=${output.height}`;
  const tail =
    output.format === 'gray'
      ? `nvvidconv${crop} ! video/x-raw,format=GRAY8,${size}`
      : `nvvidconv${crop} ! video/x-raw,format=RGBA,${size} ! videoconvert ! video/x-raw,format=RGB`;
  const sync = input.kind === 'video' && input.realtime ? 'true' : 'false';
  const pipeline = `${head} ! ${tail} ! identity silent=false ! fdsink fd=3 sync=${sync}`;
  return { command, args: ['-v', '-e', pipeline], dialect: 'gstreamer' };
}

const quote = (value: string): string => `"${value.replace(/(["\\])/g, '\\$1')}"`;
