import type { InputSpec } from '../../src/model/manifest';
import { DEFAULT_DECODER, openSource, Preprocessor, pipelineFor, V4l2Source, type OutputSpec, type RawPixels } from '../../src/ingest';
import type { SgmoeError } from '../../src/errors';
import { framecrcReader, readDecoderLine } from '../../src/ingest/decoder/lines';
import { redactText } from '../../src/redact';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEVICES_DIR, listDeviceProfiles, parseDeviceProfile } from '../../src/engine/profile';
import { BUNDLED, readManifest } from '../helpers/package';

const input = readManifest(BUNDLED).input as InputSpec;
const gray28: OutputSpec = { width: 28, height: 28, format: 'gray', fit: 'fill', pad: '#000000' };
const rtsp = { kind: 'rtsp', url: 'rtsp://admin:pa%40ss@10.0.0.7:554/Streaming/Channels/101', transport: 'tcp', timeoutMs: 5000 } as const;
const jetson = { kind: 'gstreamer', command: 'gst-launch-1.0', elements: 'jetson' } as const;
const ffmpeg = { kind: 'ffmpeg', command: 'ffmpeg' } as const;

describe('decoder pipeline per device profile', () => {
  test('every Jetson profile decodes with GStreamer on NVIDIA\'s hardware elements, the x86 profiles with ffmpeg', async () => {
    const profiles = await listDeviceProfiles();
    const decoders = Object.fromEntries(profiles.map((p) => [p.name, p.decoder ?? DEFAULT_DECODER]));
    for (const name of Object.keys(decoders)) expect(decoders[name].kind).toBe(name.startsWith('jetson-') ? 'gstreamer' : 'ffmpeg');
    expect(decoders['x86_64-nvidia']).toMatchObject({ kind: 'ffmpeg', hwaccel: 'cuda' });
  });

  test('a profile whose decoder is malformed is refused with the profile and the field named', () => {
    const profile = JSON.parse(readFileSync(join(DEVICES_DIR, 'x86_64-cpu.json'), 'utf8'));
    expect(() => parseDeviceProfile({ ...profile, decoder: { kind: 'vlc' } }, 'device profile my-box.json')).toThrow(
      expect.objectContaining({ code: 'E_PROFILE_INVALID', message: expect.stringMatching(/my-box\.json.*decoder/s) }),
    );
  });

  test('ffmpeg: RTSP over TCP, the ROI cropped, scaled to the model size with the fit, gray, one framecrc line per frame on fd 4, raw frames on fd 3', () => {
    const p = pipelineFor(ffmpeg, rtsp, { ...gray28, roi: { x: 100, y: 50, width: 400, height: 300 }, fit: 'contain', pad: '#102030' });
    expect(p.command).toBe('ffmpeg');
    expect(p.args.join(' ')).toContain('-rtsp_transport tcp -timeout 5000000');
    expect(p.args[p.args.indexOf('-filter_complex') + 1]).toBe(
      '[0:v:0]crop=400:300:100:50,scale=28:28:flags=area:force_original_aspect_ratio=decrease,pad=28:28:(ow-iw)/2:(oh-ih)/2:color=0x102030,format=gray,split=2[stamps][frames]',
    );
    expect(p.args.slice(-4)).toEqual(['-fps_mode', 'passthrough', '-f', 'rawvideo', 'pipe:3'].slice(-4));
    expect(p.args.join(' ')).toContain('-map [stamps] -fps_mode passthrough -enc_time_base -1 -c:v rawvideo -bsf:v setts=dts=N-1000000000 -f framecrc pipe:4');
    expect(pipelineFor({ ...ffmpeg, hwaccel: 'cuda' }, rtsp, gray28).args).toEqual(expect.arrayContaining(['-hwaccel', 'cuda']));
  });

  test('ffmpeg: a USB camera gets the size, rate and pixel format asked for; a file plays at its own rate only when asked', () => {
    const usb = pipelineFor(ffmpeg, { kind: 'v4l2', device: '/dev/video2', capture: { width: 1280, height: 720, fps: 30, pixelFormat: 'mjpeg' } }, gray28);
    expect(usb.args.join(' ')).toContain('-f v4l2 -video_size 1280x720 -framerate 30 -input_format mjpeg -i /dev/video2');
    expect(pipelineFor(ffmpeg, { kind: 'video', path: 'a.mp4', realtime: true }, gray28).args).toContain('-re');
    expect(pipelineFor(ffmpeg, { kind: 'video', path: 'a.mp4', realtime: false }, gray28).args).not.toContain('-re');
    const resumed = pipelineFor(ffmpeg, { kind: 'video', path: 'a.ts', realtime: false, startPts: { pts: 837000, seconds: 9.3 } }, gray28);
    expect(resumed.args.join(' ')).toContain('-seek_timestamp 1 -noaccurate_seek -ss 4.300000 -copyts -i a.ts');
  });

  test('Jetson: an RTSP camera is decoded on NVDEC, cropped and scaled by nvvidconv, the credentials passed as rtspsrc properties', () => {
    const p = pipelineFor(jetson, rtsp, { ...gray28, roi: { x: 100, y: 50, width: 400, height: 300 } });
    expect(p).toMatchObject({ command: 'gst-launch-1.0', dialect: 'gstreamer' });
    expect(p.args.slice(0, 2)).toEqual(['-v', '-e']);
    expect(p.args[2]).toBe(
      'rtspsrc location="rtsp://10.0.0.7:554/Streaming/Channels/101" protocols=tcp latency=200 tcp-timeout=5000000 user-id="admin" user-pw="pa@ss" ! parsebin ! nvv4l2decoder' +
        ' ! nvvidconv left=100 top=50 right=500 bottom=350 ! video/x-raw,format=GRAY8,width=28,height=28 ! identity silent=false ! fdsink fd=3 sync=false',
    );
  });

  test('Jetson: a USB camera\'s MJPEG is decoded on NVJPG; RGB models get RGB out of nvvidconv; a file is played in sync only at its own rate', () => {
    const usb = pipelineFor(jetson, { kind: 'v4l2', device: '/dev/video0', capture: { width: 1920, height: 1080, fps: 30 } }, { ...gray28, format: 'rgb' });
    expect(usb.args[2]).toBe(
      'v4l2src device="/dev/video0" ! image/jpeg,width=1920,height=1080,framerate=30/1 ! nvjpegdec ! video/x-raw' +
        ' ! nvvidconv ! video/x-raw,format=RGBA,width=28,height=28 ! videoconvert ! video/x-raw,format=RGB ! identity silent=false ! fdsink fd=3 sync=false',
    );
    expect(pipelineFor(jetson, { kind: 'v4l2', device: '/dev/video0', capture: { pixelFormat: 'yuyv422' } }, gray28).args[2]).toMatch(/^v4l2src device="\/dev\/video0" ! video\/x-raw ! nvvidconv/);
    expect(pipelineFor(jetson, { kind: 'video', path: '/data/shift.mp4', realtime: true }, gray28).args[2]).toMatch(/^filesrc location="\/data\/shift.mp4" ! parsebin ! nvv4l2decoder .* sync=true$/);
  });

  test('Jetson: fit contain or cover is refused with a clear error (nvvidconv only stretches)', () => {
    expect(() => pipelineFor(jetson, rtsp, { ...gray28, fit: 'cover' })).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID', message: expect.stringContaining('found "cover"') }));
  });
});

describe('decoder log lines', () => {
  const read = (line: string, dialect: 'ffmpeg' | 'gstreamer' = 'ffmpeg') => readDecoderLine(dialect, line, 'rtsp://***@cam/1', redactText);

  test('a frame line gives the pts: ffmpeg\'s framecrc (in the time base of its header) and GStreamer\'s identity', () => {
    const stamp = framecrcReader();
    expect(['#software: Lavf59.27.100', '#tb 0: 1/12800', '#media_type 0: video'].map(stamp)).toEqual([undefined, undefined, undefined]);
    expect(stamp('0,       6144,       6144,      512,      784, 0xd095890e')).toEqual({ pts: 6144, seconds: 0.48 });
    expect(read('/GstPipeline:pipeline0/GstIdentity:identity0: last-message = chain   ******* (identity0:sink) (784 bytes, dts: none, pts: 0:00:01.040000000, duration: 0:00:00.040000000', 'gstreamer')).toEqual({
      kind: 'frame',
      pts: 1_040_000_000,
      seconds: 1.04,
    });
  });

  test('ffmpeg\'s description of its input gives the picture size, complete at "Stream mapping:"', () => {
    const h264 = '[info]   Stream #0:0[0x100]: Video: h264 (High), 1 reference frame ([27][0][0][0] / 0x001B), yuv420p(progressive, left), 1920x1080 [SAR 1:1 DAR 1:1], 25 fps, 90k tbn';
    expect(read(h264)).toEqual({ kind: 'input', width: 1920, height: 1080 });
    expect(read('[info]   Stream #0:0: Video: rawvideo (YUY2 / 0x32595559), yuyv422, 640x480, 147456 kb/s, 30 fps, 30 tbr, 1000k tbn')).toEqual({ kind: 'input', width: 640, height: 480 });
    expect(read('[info]   Stream #0:1(und): Audio: aac (LC), 48000 Hz, stereo, fltp').kind).toBe('other');
    expect(read('[info] Stream mapping:').kind).toBe('described');
  });

  test('damage the decoder conceals is corrupt data; failures are named; credentials never appear', () => {
    expect(read('[h264 @ 0x55e1] [error] error while decoding MB 12 7, bytestream -5').kind).toBe('corrupt');
    expect(read('[mpegts @ 0x55e1] [warning] Packet corrupt (stream = 0, dts = 377696141).').kind).toBe('corrupt');
    const auth = read('[error] rtsp://admin:hunter2@cam/1: Server returned 401 Unauthorized (authorization failed)');
    expect(auth).toMatchObject({ kind: 'failure', error: { code: 'E_SOURCE_AUTH' } });
    expect(read('[tcp @ 0x1] [error] Connection to tcp://10.0.0.7:554?timeout=0 failed: Connection refused')).toMatchObject({ error: { code: 'E_SOURCE_UNREACHABLE' } });
    const invalid = read('[error] rtsp://admin:hunter2@cam/1: Invalid data found when processing input');
    expect(invalid).toMatchObject({ error: { code: 'E_SOURCE_INVALID_DATA' } });
    expect(JSON.stringify([auth, invalid, (invalid as { error: Error }).error.message])).not.toContain('hunter2');
    expect(read('[info]   Metadata:').kind).toBe('other');
    expect(read('[error] /dev/null: Inappropriate ioctl for device')).toEqual({ kind: 'error', text: '/dev/null: Inappropriate ioctl for device' });
  });

  test('a decoder that exits on an error no pattern names says in its E_SOURCE_DECODER what ffmpeg said (v4l2:/dev/null is no camera)', async () => {
    let failed!: (error: SgmoeError) => void;
    const failure = new Promise<SgmoeError>((resolve) => (failed = resolve));
    const source = new V4l2Source('/dev/null', { input, backoff: { initialMs: 50 }, onError: (e) => failed(e) });
    const frames = source[Symbol.asyncIterator]();
    const ended = frames.next();
    const error = await failure;
    await source.stop();
    await ended;
    expect(error).toMatchObject({ code: 'E_SOURCE_DECODER', message: expect.stringMatching(/v4l2:\/dev\/null .*exited with code 1; it said: .*Inappropriate ioctl for device/) });
  });
});

describe('camera URIs and decoder output in the ingest path', () => {
  test('openSource opens rtsp://, v4l2: and video: sources; names never carry credentials', () => {
    expect(openSource('rtsp://admin:hunter2@10.0.0.7/cam', { input })).toMatchObject({ kind: 'rtsp', name: 'rtsp://***@10.0.0.7/cam' });
    expect(openSource('v4l2:/dev/video0', { input })).toMatchObject({ kind: 'v4l2', name: 'v4l2:/dev/video0' });
    expect(openSource('video:/data/shift.mkv', { input, once: true })).toMatchObject({ kind: 'video', name: 'video:/data/shift.mkv' });
    expect(() => openSource('rtsp://cam/1')).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID', message: expect.stringContaining('model input size') }));
    expect(() => openSource('rtsps+nope://admin:hunter2@cam')).toThrow(expect.objectContaining({ code: 'E_SOURCE_URI', message: expect.not.stringContaining('hunter2') }));
  });

  test('a decoder frame already at the model size becomes the same tensor as through sharp; at another size it is resized, the ROI not applied again', async () => {
    const pixels = Buffer.from(Array.from({ length: 28 * 28 }, (_, i) => (i * 7) & 255));
    const raw = (data: Buffer, size: number, prepared?: boolean): RawPixels => ({ data, width: size, height: size, channels: 1, format: 'gray', prepared });
    const withRoi = new Preprocessor(input, { roi: { x: 10, y: 10, width: 40, height: 40 } });
    expect(await withRoi.toTensor(raw(pixels, 28, true))).toEqual(await new Preprocessor(input).toTensor(raw(pixels, 28)));
    // A package swapped to another input size: the decoder's frame is 56x56, the ROI (outside 56x56) was already applied.
    const doubled = Buffer.alloc(56 * 56);
    for (let y = 0; y < 56; y++) for (let x = 0; x < 56; x++) doubled[y * 56 + x] = pixels[(y >> 1) * 28 + (x >> 1)];
    const tensor = await new Preprocessor(input, { roi: { x: 40, y: 40, width: 60, height: 60 } }).toTensor(raw(doubled, 56, true));
    expect(tensor).toEqual(await new Preprocessor(input).toTensor(raw(doubled, 56)));
  });
});
