#!/usr/bin/env bash
# Debian packages the tests and the model factory need: PyTorch and the data set for the factory, mosquitto as
# the second, independent MQTT broker, Chromium for the dashboard test. Run as root (CI) or with sudo.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  python3-torch python3-onnx python3-numpy python3-pil dataset-fashion-mnist python3-sklearn python3-skimage \
  mosquitto mosquitto-clients \
  chromium
