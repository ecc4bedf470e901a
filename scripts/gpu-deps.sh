#!/usr/bin/env bash
# Prepares, on a Debian 12 machine with network access, the libraries segrun needs on a GPU
# machine that lacks them and cannot download them (docs/gpu.md): a folder (default .gpu-deps,
# git-ignored) to copy or carry there, which scripts/gpu-check.sh finds by itself. Only root/ and
# opencv/ are needed there (~29 MB); src/ is OpenCV's source and build folder (~450 MB).
#   .gpu-deps/root/usr/...   Debian's toml++ (libtomlplusplus-dev, libtomlplusplus3) and ISA-L
#                            (libisal-dev, libisal2), unpacked from their .deb files;
#   .gpu-deps/opencv/...     a static OpenCV 4.6 (core, imgproc, imgcodecs with JPEG and PNG)
#                            built from the source of Debian's own opencv package with Debian's
#                            amd64 CPU flags, plus the static libjpeg-turbo, libpng and zlib it
#                            links: images decode and augment exactly as with Debian's OpenCV.
#                            (Debian's shared OpenCV image codecs pull in ~200 MB of libraries.)
# Idempotent; about 7 minutes on 2 cores the first time (OpenCV; measured 2026-12-05).
#   bash scripts/gpu-deps.sh [folder]
set -euo pipefail
cd "$(dirname "$0")/.."
deps="$(realpath -m "${1:-.gpu-deps}")"
jobs="${SEGRUN_JOBS:-2}"
mkdir -p "$deps/debs" "$deps/root" "$deps/src"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# Build tools and the static codec libraries OpenCV links.
need=(build-essential cmake ninja-build dpkg-dev libjpeg62-turbo-dev libpng-dev zlib1g-dev)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# 1. toml++ and ISA-L, unpacked.
if [ ! -f "$deps/root/usr/include/toml++/toml.h" ] || [ ! -f "$deps/root/usr/include/isa-l.h" ]; then
  (cd "$deps/debs" && apt-get download libtomlplusplus-dev libtomlplusplus3 libisal-dev libisal2)
  for deb in "$deps"/debs/*.deb; do dpkg -x "$deb" "$deps/root"; done
  lib="$deps/root/usr/lib/x86_64-linux-gnu"
  [ -e "$lib/libisal.so" ] || ln -s libisal.so.2 "$lib/libisal.so"
  rm -rf "$deps/root/usr/share"
fi

# 2. A static OpenCV from Debian's source package (deb-src entry added when missing).
if [ ! -f "$deps/opencv/lib/libopencv_imgcodecs.a" ]; then
  if ! grep -rqs "deb-src\|Types:.*deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
      $SUDO tee /etc/apt/sources.list.d/segrun-deb-src.sources > /dev/null
    $SUDO apt-get update -qq
  fi
  if [ ! -d "$deps/src/opencv" ]; then
    (cd "$deps/src" && apt-get source --download-only opencv && dpkg-source -x opencv_*.dsc opencv)
  fi
  # Debian's amd64 flags (debian/rules: CPU_BASELINE SSE2, SSE3 disabled, no IPP), codecs JPEG and
  # PNG from the system's static libraries, everything else off.
  cmake -S "$deps/src/opencv" -B "$deps/src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$deps/opencv" -DCMAKE_INSTALL_LIBDIR=lib -DBUILD_SHARED_LIBS=OFF \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DBUILD_LIST=core,imgproc,imgcodecs \
    -DCPU_BASELINE=SSE2 -DCPU_BASELINE_DISABLE=SSE3 -DWITH_IPP=OFF -DWITH_ITT=OFF -DWITH_TBB=OFF \
    -DWITH_OPENCL=OFF -DWITH_JPEG=ON -DWITH_PNG=ON -DBUILD_JPEG=OFF -DBUILD_PNG=OFF -DBUILD_ZLIB=OFF \
    -DWITH_TIFF=OFF -DWITH_WEBP=OFF -DWITH_OPENEXR=OFF -DWITH_JASPER=OFF -DWITH_OPENJPEG=OFF \
    -DWITH_IMGCODEC_HDR=OFF -DWITH_IMGCODEC_SUNRASTER=OFF -DWITH_IMGCODEC_PXM=OFF -DWITH_IMGCODEC_PFM=OFF \
    -DWITH_GDAL=OFF -DWITH_GDCM=OFF -DWITH_FFMPEG=OFF -DWITH_GSTREAMER=OFF -DWITH_GTK=OFF -DWITH_QT=OFF \
    -DWITH_VTK=OFF -DWITH_EIGEN=OFF -DWITH_LAPACK=OFF -DWITH_PROTOBUF=OFF -DWITH_ADE=OFF -DWITH_CAROTENE=OFF \
    -DWITH_QUIRC=OFF -DWITH_OPENGL=OFF -DWITH_1394=OFF -DWITH_V4L=OFF -DWITH_VA=OFF -DWITH_VA_INTEL=OFF \
    -DBUILD_TESTS=OFF -DBUILD_PERF_TESTS=OFF -DBUILD_EXAMPLES=OFF -DBUILD_opencv_apps=OFF -DBUILD_JAVA=OFF \
    -DBUILD_opencv_python2=OFF -DBUILD_opencv_python3=OFF -DOPENCV_DOWNLOAD_TRIES_LIST= \
    -DENABLE_PRECOMPILED_HEADERS=OFF -DOPENCV_GENERATE_PKGCONFIG=OFF -DBUILD_INFO_SKIP_TIMESTAMP=ON \
    -DCMAKE_CXX_FLAGS=-g0 > "$deps/src/configure.log"
  cmake --build "$deps/src/build" -j "$jobs" --target install > "$deps/src/build.log"
  for a in libjpeg.a libpng16.a libz.a; do cp "/usr/lib/x86_64-linux-gnu/$a" "$deps/opencv/lib/"; done
  rm -rf "$deps/opencv/share" "$deps/opencv/bin"
fi
echo "gpu-deps: $deps ($(du -sh "$deps/root" "$deps/opencv" | awk '{print $1}' | paste -sd+) in root + opencv)"
