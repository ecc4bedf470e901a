# Shared helpers of segrun's shell tests (source it; it defines functions and counters only).
#   check "what" cmd...        run a check, count it, print FAIL lines
#   finish NAME                print "NAME: P passed, F failed" and return non-zero on failures
#   json FILE EXPR             evaluate a Python expression over the JSON document d
#   make_tiny_stores DIR [N]   synthesize ADE20K-layout data (8 train, 4 val, 64x80, seed 3) in
#                              DIR/raw and pack it into DIR/train and DIR/val on N ranks (default 1)
#   tiny_config STORE [VAL]    print the [data] and [model] sections of a config that trains in
#                              seconds (append [train]/[log] sections yourself)
py=/usr/bin/python3
failures=0
passed=0

check() {
  local what="$1"; shift
  if "$@"; then passed=$((passed + 1)); else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

finish() {
  echo "$1: $passed passed, $failures failed"
  test "$failures" -eq 0
}

json() { "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

make_tiny_stores() {
  local dir="$1" ranks="${2:-1}" split out
  "$segrun" data synth --layout ade20k --out "$dir/raw" --train 8 --val 4 --size 64x80 --seed 3 > /dev/null || return 1
  for split in training validation; do
    out="$dir/train"; [ "$split" = validation ] && out="$dir/val"
    if [ "$ranks" -gt 1 ]; then
      "$segrun" launch -n "$ranks" -- data pack --layout ade20k --root "$dir/raw" --split "$split" \
        --out "$out" --shards "$ranks" > /dev/null 2>&1 || return 1
    else
      "$segrun" data pack --layout ade20k --root "$dir/raw" --split "$split" --out "$out" > /dev/null 2>&1 || return 1
    fi
  done
}

tiny_config() {
  printf '[data]\nstore = "%s"\n' "$1"
  if [ -n "${2:-}" ]; then printf 'val_store = "%s"\n' "$2"; fi
  printf 'crop = [64, 64]\nscale = [160, 64]\nbatch_per_rank = 2\nworkers = 1\n'
  printf '[model]\nwidth = 8\nfpn_channels = 16\n'
}
