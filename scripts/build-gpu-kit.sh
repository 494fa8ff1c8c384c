#!/usr/bin/env bash
# Builds .gpu-kit/: everything `bench gpu` needs on a machine with a GPU but no Node, no npm and no
# internet — an esbuild bundle of bench/gpu.ts, the `webgpu` package with only its linux-x64
# binary (xz), the node binary (xz), the libvulkan1 .deb, bench/torch_gpu.py — and run.sh, the one
# command to run there:   bash .gpu-kit/run.sh [--quick]    (stays under 60 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu-kit
rm -rf "$KIT"
mkdir -p "$KIT/node_modules/webgpu/dist/linux-x64"
# The bundle: everything but the native parts, which come beside it.
npx esbuild bench/gpu.ts --bundle --platform=node --format=esm --target=node20 --log-level=warning \
  --outfile="$KIT/gpu-bench.mjs" --external:webgpu --external:koffi --external:@occam/blas \
  --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
  --banner:js="import { createRequire as occamRequire } from 'node:module'; const require = occamRequire(import.meta.url);"
cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$KIT/node_modules/webgpu/"
xz -9 -T0 -c node_modules/webgpu/dist/linux-x64/dawn.node >"$KIT/dawn.node.xz"
xz -9 -T0 -c "$(command -v node)" >"$KIT/node.xz"
cp bench/torch_gpu.py "$KIT/"
WORK="$(mktemp -d)"
chmod 777 "$WORK"
(cd "$WORK" && apt-get download -qq libvulkan1)
cp "$WORK"/libvulkan1_*.deb "$KIT/"
rm -rf "$WORK"
cat >"$KIT/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs `bench gpu` here: unpacks node and Dawn, installs the Vulkan loader if the system lacks
# it, points the loader at the NVIDIA driver's ICD if none is set. Arguments go to the bench.
set -euo pipefail
cd "$(dirname "$0")"
[ -x node ] || { xz -dc node.xz >node && chmod +x node; }
[ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || xz -dc dawn.node.xz >node_modules/webgpu/dist/linux-x64/dawn.node
has_loader() {
  ldconfig -p | grep -q 'libvulkan.so.1 ' && return 0
  local dir
  for dir in ${LD_LIBRARY_PATH//:/ }; do [ -f "$dir/libvulkan.so.1" ] && return 0; done
  return 1
}
has_loader || { dpkg -x libvulkan1_*.deb / && ldconfig; }
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
  done
fi
exec ./node gpu-bench.mjs "$@"
RUN
chmod +x "$KIT/run.sh"
du -sh "$KIT"
