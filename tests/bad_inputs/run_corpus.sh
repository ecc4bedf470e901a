#!/usr/bin/env bash
# The bad-input corpus runner: feeds every case under cases/ to the segrun CLI and checks that it
# is refused the way its `case` file says (format: docs/reliability.md):
#   - the exit code is the expected one (never a signal, never the timeout);
#   - stderr holds exactly one line matching `error:` and at most one "segrun: error" line
#     (library backtraces cut), and no crash marker (terminate called, segfault, abort,
#     sanitizer report); a report command (data inspect) names the problem on stdout instead:
#     `stdout:` must then match a line there;
#   - every `absent:` path is missing afterwards (no partial output under a final name), every
#     `present:` path exists (accepted inputs).
# Cases with `exit: 0` are inputs that must be ACCEPTED (e.g. a grayscale JPEG, which mmseg reads
# as BGR); they are counted apart. Prints "N bad inputs refused correctly".
# Cases run SEGRUN_BAD_INPUTS_JOBS at a time (default 2), each in its own scratch folder.
# Usage: run_corpus.sh SEGRUN_BINARY [CASE_NAME_REGEX]
set -uo pipefail
segrun="$(realpath "$1")"
filter="${2:-.}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d /tmp/segrun-bad-inputs.XXXXXX)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
. "$here/../lib.sh"
. "$here/helpers.sh"
export OMP_NUM_THREADS=1

# ---- shared fixtures: small valid stores, sources, config and checkpoint to break -------------
fix="$work/fixtures"
mkdir -p "$fix"
(
  set -e
  cd "$fix"
  "$segrun" data synth --layout ade20k --out raw --train 4 --val 2 --size 64x64 > /dev/null 2>&1
  "$segrun" data pack --root raw --split training --out train > /dev/null 2>&1
  "$segrun" data pack --root raw --split validation --out val > /dev/null 2>&1
  "$segrun" data synth --layout cityscapes --out city --train 2 --val 1 --size 48x96 > /dev/null 2>&1
  "$segrun" data pack --layout cityscapes --root city --split train --out city_train > /dev/null 2>&1
  cat > ok.toml <<TOML
[data]
store = "$fix/train"
crop = [64, 64]
scale = [128, 64]
batch_per_rank = 2
workers = 1
[model]
pretrained = "none"
width = 8
fpn_channels = 8
[train]
iters = 2
warmup_iters = 0
checkpoint_interval = 0
eval_interval = 0
TOML
  "$segrun" train ok.toml --run-dir run > /dev/null 2>&1
  cp run/checkpoints/iter_2.pt ckpt.pt
  rm -rf run
) || { echo "bad_inputs: cannot build the fixtures"; exit 1; }
chmod -R a-w "$fix"  # cases must copy what they damage

crash_re='terminate called|Segmentation fault|core dumped|Aborted|stack trace|AddressSanitizer|LeakSanitizer|runtime error:|Exception raised from'
start=$SECONDS

field() { sed -n "s/^$1: //p" "$2"; }

# run_case DIR NAME: writes "refused", "accepted" or the failure report to <scratch>/.result.
run_case() {
  local dir="$1" name="$2" cwd="$work/cases/$2"
  mkdir -p "$cwd" && cp -r "$dir/." "$cwd/" && rm -f "$cwd/case"
  local f
  for f in ok.toml train val city_train raw city ckpt.pt; do ln -sfn "$fix/$f" "$cwd/$f"; done
  local run want_exit want_error want_stdout prepare
  run=$(field run "$dir/case")
  want_exit=$(field exit "$dir/case")
  want_error=$(field error "$dir/case")
  want_stdout=$(field stdout "$dir/case")
  prepare=$(field prepare "$dir/case")
  if [ -z "$run" ] || [ -z "$want_exit" ] || { [ "$want_exit" != 0 ] && [ -z "$want_error$want_stdout" ]; }; then
    echo "FAIL: $name: case file needs run:, exit: and (unless exit is 0) error: or stdout:" > "$cwd/.result"
    return
  fi
  if [ -n "$prepare" ] && ! (cd "$cwd" && eval "$prepare") > "$cwd/.prepare.log" 2>&1; then
    { echo "FAIL: $name: prepare failed: $prepare"; head -n 3 "$cwd/.prepare.log"; } > "$cwd/.result"
    return
  fi
  local -a args
  eval "args=($run)"
  (cd "$cwd" && exec timeout -k 5 120 "$segrun" "${args[@]}") > "$cwd/.stdout" 2> "$cwd/.stderr" < /dev/null
  local code=$? problem=""
  local errors matches
  errors=$(grep -c "^segrun: error" "$cwd/.stderr")
  if [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; then problem="timed out (exit $code)"
  elif [ "$code" -ge 128 ]; then problem="killed by signal $((code - 128))"
  elif grep -qE "$crash_re" "$cwd/.stderr" "$cwd/.stdout"; then problem="crash marker in the output"
  elif [ "$code" -ne "$want_exit" ]; then problem="exit $code, expected $want_exit"
  elif [ "$errors" -gt 1 ]; then problem="$errors 'segrun: error' lines"
  elif [ -n "$want_error" ]; then
    matches=$(grep -cE -- "$want_error" "$cwd/.stderr")
    [ "$matches" -eq 1 ] || problem="$matches stderr lines match /$want_error/"
  elif [ "$want_exit" = 0 ] && [ "$errors" -ne 0 ]; then problem="an accepted input printed an error"
  fi
  if [ -z "$problem" ] && [ -n "$want_stdout" ] && ! grep -qE -- "$want_stdout" "$cwd/.stdout"; then
    problem="no stdout line matches /$want_stdout/"
  fi
  if [ -z "$problem" ]; then
    while read -r f; do
      [ -n "$f" ] && [ -e "$cwd/$f" ] && problem="left $f behind"
    done < <(field absent "$dir/case")
    while read -r f; do
      [ -n "$f" ] && [ ! -e "$cwd/$f" ] && problem="did not write $f"
    done < <(field present "$dir/case")
  fi
  if [ -n "$problem" ]; then
    {
      echo "FAIL: $name: $problem"
      echo "  command: segrun $run"
      grep -v "^20[0-9-]* [0-9:.]* info" "$cwd/.stderr" | head -n 4 | sed 's/^/  stderr: /'
    } > "$cwd/.result"
  elif [ "$want_exit" = 0 ]; then
    echo accepted > "$cwd/.result"
  else
    echo refused > "$cwd/.result"
  fi
}

names=()
while read -r case_file; do
  dir="$(dirname "$case_file")"
  name="${dir#"$here/cases/"}"
  [[ "$name" =~ $filter ]] || continue
  names+=("$name")
  while [ "$(jobs -rp | wc -l)" -ge "${SEGRUN_BAD_INPUTS_JOBS:-2}" ]; do wait -n; done
  run_case "$dir" "$name" &
done < <(find "$here/cases" -name case -type f | sort)
wait

refused=0
accepted=0
for name in "${names[@]}"; do
  result="$(cat "$work/cases/$name/.result" 2>/dev/null || echo "FAIL: $name: no result")"
  case "$result" in
    refused) refused=$((refused + 1)) ;;
    accepted) accepted=$((accepted + 1)) ;;
    *) echo "$result"; failures=$((failures + 1)) ;;
  esac
done

echo "$refused bad inputs refused correctly, $accepted edge inputs accepted ($((SECONDS - start)) s)"
passed=$((refused + accepted))
finish bad_inputs
