#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe) from bookworm-backports into a private folder,
# .cache/lavapipe, without touching the system's Mesa (Chromium's GL libraries stay as they are).
# Dawn (the `webgpu` package) refuses bookworm's own lavapipe 22.3. Afterwards, run with
#   VK_DRIVER_FILES=$PWD/.cache/lavapipe/lvp_icd.json LD_LIBRARY_PATH=$PWD/.cache/lavapipe/usr/lib/x86_64-linux-gnu
# Idempotent; needs apt-get and root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="$PWD/.cache/lavapipe"
[ -f "$DIR/lvp_icd.json" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
SOURCES=/etc/apt/sources.list.d/occam-bookworm-backports.sources
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | $SUDO tee "$SOURCES" >/dev/null
fi
$SUDO apt-get update -qq
# The driver's own dependencies from bookworm (most come with Chromium already).
$SUDO apt-get install -y -qq --no-install-recommends libllvm15 libdrm-intel1 libsensors5 libx11-xcb1 libxcb-dri3-0 \
  libxcb-present0 libxcb-randr0 libxcb-sync1 libxcb-xfixes0 libxcb-shm0 libxshmfence1 libwayland-client0 libelf1 >/dev/null
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
chmod 777 "$WORK" # apt's download user must be able to write here
(cd "$WORK" && apt-get download -qq -t bookworm-backports mesa-vulkan-drivers mesa-libgallium libdrm2 libdrm-amdgpu1 && apt-get download -qq libvulkan1)
mkdir -p "$DIR"
for deb in "$WORK"/*.deb; do dpkg -x "$deb" "$DIR"; done
LIB="$DIR/usr/lib/x86_64-linux-gnu"
printf '{\n  "file_format_version": "1.0.0",\n  "ICD": { "library_path": "%s/libvulkan_lvp.so", "api_version": "1.4.305" }\n}\n' "$LIB" >"$DIR/lvp_icd.json"
echo "lavapipe installed in $DIR"
