#!/usr/bin/env bash
# Builds onnxruntime-node with the CUDA and TensorRT execution providers on a Jetson (JetPack 6: CUDA 12.x,
# cuDNN 9, TensorRT 10), then packs it so the SDK can install it in place of the CPU-only npm package.
#
#   ORT_SOURCE=/opt/src/onnxruntime scripts/jetson/build-onnxruntime-node.sh
#
# ORT_SOURCE is a checkout of microsoft/onnxruntime at the tag matching package.json's onnxruntime-node version
# (git checkout v1.30.0 && git submodule update --init --recursive). Expect 2-4 hours on an Orin with 8 GB; add
# swap first on 8 GB boards. Everything below runs on the board itself (no cross-compilation).
set -euo pipefail

: "${ORT_SOURCE:?set ORT_SOURCE to an onnxruntime source checkout}"
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
TENSORRT_HOME=${TENSORRT_HOME:-/usr/lib/aarch64-linux-gnu}
CUDNN_HOME=${CUDNN_HOME:-/usr/lib/aarch64-linux-gnu}
JOBS=${JOBS:-$(( $(nproc) > 4 ? 4 : $(nproc) ))}   # more jobs than this runs an 8 GB board out of memory

model=$(tr -d '\0' < /proc/device-tree/model 2>/dev/null || echo unknown)
case "$model" in
  *Orin*) CUDA_ARCH=87 ;;     # Ampere, sm_87
  *Xavier*) CUDA_ARCH=72 ;;   # Volta, sm_72 (JetPack 5: see README for the matching ONNX Runtime version)
  *) echo "not a Jetson Orin/Xavier ($model); set CUDA_ARCH yourself" >&2; CUDA_ARCH=${CUDA_ARCH:?} ;;
esac
echo "building onnxruntime-node for $model (sm_$CUDA_ARCH) from $ORT_SOURCE with $JOBS jobs"

command -v nvcc >/dev/null || export PATH="$CUDA_HOME/bin:$PATH"
cd "$ORT_SOURCE"
./build.sh --config Release --update --build --parallel "$JOBS" --skip_tests \
  --build_shared_lib --build_nodejs \
  --use_cuda --cuda_home "$CUDA_HOME" --cudnn_home "$CUDNN_HOME" \
  --use_tensorrt --tensorrt_home "$TENSORRT_HOME" \
  --cmake_extra_defines "CMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH" onnxruntime_BUILD_UNIT_TESTS=OFF

# The build drops the binding and the provider libraries under js/node/bin/; pack them as an npm tarball.
cd js/node
npm ci --ignore-scripts
npm run build
tarball=$(npm pack --silent)
echo
echo "built $ORT_SOURCE/js/node/$tarball"
echo "install it in the SDK:   npm install $ORT_SOURCE/js/node/$tarball"
echo "then check:              npx sgmoe doctor    (tensorrt and cuda should say 'works')"
