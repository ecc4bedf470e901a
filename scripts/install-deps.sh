#!/usr/bin/env bash
# Installs every Debian package segrun needs to build, test and run its demo.
# Idempotent: packages already present are skipped, `apt-get update` runs at most once.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev
  libopenblas0-openmp  # Debian's LibTorch calls the libblas.so.3 alternative: reference BLAS is ~15x slower
  libopenmpi-dev openmpi-bin libgloo-dev
  libhdf5-dev
  libtomlplusplus-dev libspdlog-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev nlohmann-json3-dev zlib1g-dev libisal-dev
  libopencv-imgcodecs-dev libopencv-imgproc-dev libopencv-core-dev
  python3 python3-torch python3-scipy python3-opencv python3-numpy python3-h5py
  python3-protobuf python3-crc32c  # tests: an independent reader of the TensorBoard files
  clang libclang-rt-14-dev
  slurm-wlm munge
  openssh-server openssh-client iproute2  # tests/cluster/multihost_test.sh: sshd in network namespaces
  gnuplot-nox
  chromium  # tests/sweeps/report_browser_test.sh: `segrun report` loaded in headless Chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
