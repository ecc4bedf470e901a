#!/usr/bin/env bash
# Compiles (syntax only) segrun's translation units with SEGRUN_WITH_CUDA=1, as a CUDA build
# would, on a machine without a CUDA LibTorch, so that a change that breaks the CUDA-only code
# shows in CI. Compile commands come from compile_commands.json; build_config.h is regenerated
# with CUDA on, and the one header a CPU LibTorch does not ship
# (c10/cuda/impl/cuda_cmake_macros.h) is stubbed.
#   cuda_syntax_check.sh [--torch-include DIR] [--jobs N] BUILD_DIR CUDA_INCLUDE_DIR FILE...|--all
# --torch-include DIR: compile against another LibTorch's headers (DIR is its include folder,
#   holding ATen/, c10/, torch/) instead of the build's; every LibTorch header a unit then takes
#   from the build's LibTorch (a header the other one lacks) is reported as a failure, so the
#   check really is against DIR. This is how the sources are checked against LibTorch 2.x on a
#   machine that has only Debian's 1.13 (docs/gpu.md).
# --all: every translation unit of the build (generated protobuf sources and precompiled-header
#   units aside) instead of the FILEs named.
set -uo pipefail
torch_include=""
jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --torch-include) torch_include="$(realpath "$2")"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    *) break ;;
  esac
done
build="$(realpath "$1")"
cuda_include="$2"
shift 2
scratch="$(mktemp -d /tmp/segrun-cuda-syntax.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/generated" "$scratch/stub/c10/cuda/impl" "$scratch/out"
sed 's/#define SEGRUN_WITH_CUDA 0/#define SEGRUN_WITH_CUDA 1/' "$build/generated/build_config.h" > "$scratch/generated/build_config.h"
grep -q "SEGRUN_WITH_CUDA 1" "$scratch/generated/build_config.h" || { echo "no SEGRUN_WITH_CUDA in build_config.h"; exit 1; }
[ -f "$torch_include/c10/cuda/impl/cuda_cmake_macros.h" ] ||
  echo "#pragma once" > "$scratch/stub/c10/cuda/impl/cuda_cmake_macros.h"

# One line per unit: the file, a tab, its command rewritten for a syntax check. Dropped: the
# launcher (ccache env), the object/dependency outputs and the precompiled header. Put before the
# build's generated headers: the CUDA build_config.h, the stub and the CUDA headers; with
# --torch-include, the other LibTorch's include folders replace the build's.
/usr/bin/python3 - "$build" "$scratch" "$cuda_include" "$torch_include" "$@" > "$scratch/commands.tsv" <<'PY'
import json, shlex, sys
build, scratch, cuda_include, torch_include, *files = sys.argv[1:]
entries = json.load(open(f"{build}/compile_commands.json"))
if files == ["--all"]:
    chosen = [e for e in entries if not e["file"].endswith((".hxx.cxx", ".pb.cc", "torch_pch.cpp"))]
else:
    chosen = []
    for name in files:
        match = [e for e in entries if e["file"].endswith(name)]
        if not match:
            print(f"{name}\tMISSING")
        chosen += match[:1]
for e in chosen:
    words, args, skip = shlex.split(e["command"]), [], False
    for w in words:
        if skip:
            skip = False
        elif w in ("-o", "-MF", "-MT", "-include"):
            skip = True
        elif w in ("-MD", "-Winvalid-pch", "-Werror", "-E", "env") or w.endswith("ccache") or w.startswith("CCACHE_") or w == "/usr/bin/cmake":
            pass
        elif w == f"-I{build}/generated":
            args += [f"-I{scratch}/generated", f"-I{scratch}/stub", w, "-isystem", cuda_include]
        elif torch_include and w.endswith("/torch/csrc/api/include"):
            args += [f"-I{torch_include}", f"-I{torch_include}/torch/csrc/api/include"]
        else:
            args.append(w)
    # "-isystem" followed by the replaced folder leaves a dangling flag: drop it.
    cleaned = []
    for i, w in enumerate(args):
        if w == "-isystem" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            continue
        cleaned.append(w)
    print(e["file"] + "\t" + shlex.join(cleaned + ["-fsyntax-only", "-MD", "-MF", "DEPFILE"]))
PY

check_one() {  # file<TAB>command: compiles it, prints "ok: ..." or "FAIL: ..." with the first errors
  local file="${1%%$'\t'*}" command="${1#*$'\t'}" name out
  name="$(echo "${file#"$build"/}" | tr '/' '_')"
  out="$scratch/out/$name"
  if [ "$command" = MISSING ]; then echo "FAIL: $file is not in compile_commands.json"; return 1; fi
  command="${command/DEPFILE/$out.d}"
  if ! (cd "$build" && eval "$command") > "$out.txt" 2>&1; then
    echo "FAIL: $file with SEGRUN_WITH_CUDA=1:"; grep -m20 -E 'error|required from' "$out.txt" || head -20 "$out.txt"
    return 1
  fi
  if [ -n "$torch_include" ] && grep -oE '/usr/include/(ATen|c10|caffe2|torch)/[^ ]*' "$out.d" > "$out.mixed"; then
    echo "FAIL: $file took headers from the build's LibTorch, not $torch_include:"; head -5 "$out.mixed"
    return 1
  fi
  echo "ok: $file compiles with SEGRUN_WITH_CUDA=1${torch_include:+ against $torch_include}"
}
export -f check_one
export build scratch torch_include
tr '\n' '\0' < "$scratch/commands.tsv" | xargs -0 -n1 -P "$jobs" bash -c 'check_one "$1"' _ > "$scratch/report.txt"
status=$?
cat "$scratch/report.txt"
echo "$(grep -c '^ok:' "$scratch/report.txt") units compiled, $(grep -c '^FAIL:' "$scratch/report.txt") failed"
exit $((status != 0))
