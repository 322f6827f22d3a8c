#!/usr/bin/env bash
# Debian packages the tests and the model factory need: PyTorch and the data set for the factory, mosquitto as
# the second, independent MQTT broker, Chromium for the dashboard test, ffmpeg (the camera sources' decoder),
# libturbojpeg0 (camera JPEGs at libjpeg-turbo's speed; without it sharp decodes them) and
# GStreamer's RTSP server with the elements the camera tests stream through (x264enc: ugly; rtph264pay: good;
# h264parse, tsdemux: bad), and systemd's offline tools (systemd-analyze verify, systemd-sysusers and
# systemd-tmpfiles --root) for the example unit's test. Run as root (CI) or with sudo.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  python3-torch python3-onnx python3-numpy python3-pil dataset-fashion-mnist python3-sklearn python3-skimage \
  mosquitto mosquitto-clients \
  chromium \
  ffmpeg libturbojpeg0 \
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
# Not upgraded when there: a base image's systemd is enough for its offline tools.
command -v systemd-analyze >/dev/null || apt-get install -y -qq --no-install-recommends systemd
