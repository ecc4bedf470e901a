#!/usr/bin/env bash
# Compiles (syntax only) the translation units that hold segrun's CUDA-only code with
# SEGRUN_WITH_CUDA=1, against the c10/cuda headers of the CPU-only LibTorch at hand, so that a
# change that breaks them shows in CI, which has no CUDA LibTorch. Their compile commands are
# taken from compile_commands.json; build_config.h is regenerated with CUDA on, and the one
# header a CPU LibTorch does not ship (c10/cuda/impl/cuda_cmake_macros.h) is stubbed.
#   cuda_syntax_check.sh BUILD_DIR CUDA_INCLUDE_DIR FILE...
set -uo pipefail
build="$(realpath "$1")"
cuda_include="$2"
shift 2
scratch="$(mktemp -d /tmp/segrun-cuda-syntax.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/generated" "$scratch/stub/c10/cuda/impl"
sed 's/#define SEGRUN_WITH_CUDA 0/#define SEGRUN_WITH_CUDA 1/' "$build/generated/build_config.h" > "$scratch/generated/build_config.h"
grep -q "SEGRUN_WITH_CUDA 1" "$scratch/generated/build_config.h" || { echo "no SEGRUN_WITH_CUDA in build_config.h"; exit 1; }
echo "#pragma once" > "$scratch/stub/c10/cuda/impl/cuda_cmake_macros.h"
failures=0
for file in "$@"; do
  command="$(/usr/bin/python3 - "$build/compile_commands.json" "$file" <<'PY'
import json, shlex, sys
for entry in json.load(open(sys.argv[1])):
    if entry["file"].endswith(sys.argv[2]):
        print(entry["command"]); break
PY
)"
  [ -n "$command" ] || { echo "FAIL: $file is not in compile_commands.json"; failures=$((failures + 1)); continue; }
  # Drop the launcher (ccache env), the object/dependency outputs and the precompiled header;
  # put the CUDA build_config.h, the stub and the CUDA headers first.
  read -r -a words <<< "$command"
  args=()
  skip=0
  for w in "${words[@]}"; do
    if [ $skip = 1 ]; then skip=0; continue; fi
    case "$w" in
      -o|-MF|-MT|-include) skip=1 ;;
      -MD|-Winvalid-pch|*ccache|/usr/bin/cmake|-E|env|CCACHE_*) ;;
      -I"$build"/generated) args+=("-I$scratch/generated" "-I$scratch/stub" "-isystem" "$cuda_include") ;;
      *) args+=("$w") ;;
    esac
  done
  if (cd "$build" && "${args[@]}" -fsyntax-only) > "$scratch/out.txt" 2>&1; then
    echo "ok: $file compiles with SEGRUN_WITH_CUDA=1"
  else
    echo "FAIL: $file with SEGRUN_WITH_CUDA=1:"; head -20 "$scratch/out.txt"; failures=$((failures + 1))
  fi
done
exit $((failures > 0))
