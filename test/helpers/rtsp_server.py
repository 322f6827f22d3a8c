"""A real RTSP server for the camera tests (GStreamer's gst-rtsp-server through python3-gi).

    /usr/bin/python3 rtsp_server.py PORT SOURCE [USER PASSWORD]

SOURCE is `live` (a moving test pattern, H.264 at 25 fps) or the path of an MPEG-TS file with H.264
(streamed once per client, at its own rate). Serves rtsp://127.0.0.1:PORT/cam, with basic authentication when a
user is given, and prints "ready" on stdout once it listens.
"""
import sys

import gi

gi.require_version('Gst', '1.0')
gi.require_version('GstRtspServer', '1.0')
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LIVE = ('videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 '
        '! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! rtph264pay name=pay0 pt=96')
FILE = 'filesrc location={} ! tsparse set-timestamps=true ! tsdemux ! h264parse ! rtph264pay name=pay0 pt=96'


def main() -> None:
    port, source = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address('127.0.0.1')
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( {LIVE if source == "live" else FILE.format(source)} )')
    factory.set_shared(source == 'live')
    if len(sys.argv) > 4:
        user, password = sys.argv[3], sys.argv[4]
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string('media.factory.role', 'camera-user')
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role('camera-user', 'media.factory.access', True)
        permissions.add_permission_for_role('camera-user', 'media.factory.construct', True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory('/cam', factory)
    if server.attach(None) == 0:
        sys.exit(f'cannot listen on 127.0.0.1:{port}')
    print('ready', flush=True)
    GLib.MainLoop().run()


if __name__ == '__main__':
    main()
