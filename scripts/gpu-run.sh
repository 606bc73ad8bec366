#!/usr/bin/env bash
# Runs the WebGPU measurement (scripts/gpu-measure.ts, packed by scripts/gpu-kit.mjs into
# gpu-kit/) on a GPU machine, from the repository's root:  bash gpu-kit/run.sh [options]
#
# - Vulkan: Dawn needs the Vulkan loader (libvulkan.so.1) and the GPU driver's ICD. When the
#   machine lacks the loader, Debian packages carried in .gl/ (README: WebGPU) are unpacked.
# - Node: the machine's own when it is 20 or newer, else the one in gpu-kit/node.xz.
# - PyTorch: python3 (override with --python PATH) runs scripts/bench_torch.py --device cuda.
# Output: a progress log on stderr, gpu-measure.json in $OUT (else ./gpu-measure-out).
set -uo pipefail
kit=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$kit/.." && pwd)

unxz_to() { # file.xz destination
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" >"$2"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}

if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
  if ls "$repo"/.gl/*.deb >/dev/null 2>&1; then
    echo "== unpacking the carried Vulkan/EGL loaders (.gl/*.deb)" >&2
    for f in "$repo"/.gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  else
    echo "== no Vulkan loader (libvulkan.so.1) and no .gl/*.deb to unpack: Dawn can reach no Vulkan GPU (only OpenGL ES)" >&2
  fi
fi
# where NVIDIA's container runtime puts the ICD and EGL vendor files
nv=/usr/local/nvidia/share
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv/vulkan/icd.d/nvidia_icd.json" ] && [ ! -f /usr/share/vulkan/icd.d/nvidia_icd.json ] && [ ! -f /etc/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES="$nv/vulkan/icd.d/nvidia_icd.json"
fi
if [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$nv/glvnd/egl_vendor.d/10_nvidia.json" ]; then
  export __EGL_VENDOR_LIBRARY_FILENAMES="$nv/glvnd/egl_vendor.d/10_nvidia.json"
fi

dawn="$kit/node_modules/webgpu/dist/linux-x64/dawn.node"
[ -f "$dawn" ] || unxz_to "$dawn.xz" "$dawn"

node=$(command -v node || true)
if [ -z "$node" ] || ! "$node" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null; then
  node=/tmp/blocklab-node
  if [ ! -x "$node" ]; then
    [ -f "$kit/node.xz" ] || { echo "no Node 20+ here and gpu-kit/node.xz is missing (built with --no-node)" >&2; exit 1; }
    unxz_to "$kit/node.xz" "$node" && chmod +x "$node"
  fi
fi
echo "== node $("$node" --version), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')" >&2
cd "$repo" && exec "$node" "$kit/measure.mjs" --repo "$repo" "$@"
