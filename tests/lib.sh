# Shared helpers of segrun's shell tests (source it; it defines functions and counters only).
#   enter_work_dir NAME        make a fresh folder /tmp/segrun-NAME.XXXXXX as $work, cd into it,
#                              and remove it when the test exits (kept when KEEP_WORK is set);
#                              make the test's path arguments absolute (realpath) before it
#   check "what" cmd...        run a check, count it, print FAIL lines
#   finish NAME                print "NAME: P passed, F failed" and return non-zero on failures
#   json FILE EXPR             evaluate a Python expression over the JSON document d
#   make_stores DIR LAYOUT TRAIN VAL HxW SEED [N]
#                              synthesize LAYOUT (ade20k | cityscapes) data in DIR/raw and pack
#                              it into DIR/train and DIR/val on N ranks (default 1)
#   make_tiny_stores DIR [N]   make_stores DIR ade20k 8 4 64x80 3 [N]
#   train_losses METRICS_JSONL print the sorted [(iteration, loss)] of the file's train records
#                              (the last record of an iteration wins: a resumed run repeats some)
#   same_train_losses A B      both metrics files have train losses, and the same (for check)
#   holds PYTHON_EXPR          succeed when the Python expression is true (for check)
#   tiny_config STORE [VAL]    print the [data] and [model] sections of a config that trains in
#                              seconds (append [train]/[log] sections yourself)
#   tiny_train_config STORE VAL ITERS WARMUP CKPT_INTERVAL EVAL_INTERVAL LOG_INTERVAL
#                              tiny_config with the [train] and [log] sections too
#   check_eval_and_resume METRIC VALUE CHECKPOINT CONFIG [OVERRIDE...]
#                              `$segrun eval` of the checkpoint reproduces METRIC = VALUE, and
#                              resuming the finished run in ./run is a no-op that exits 0
py=/usr/bin/python3
failures=0
passed=0

enter_work_dir() {
  work="$(mktemp -d "/tmp/segrun-$1.XXXXXX")" || exit 1
  trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT
  cd "$work" || exit 1
}

check() {
  local what="$1"; shift
  if "$@"; then passed=$((passed + 1)); else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

finish() {
  echo "$1: $passed passed, $failures failed"
  test "$failures" -eq 0
}

json() { "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

train_losses() {
  "$py" -c "
import json, sys
losses = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r['mode'] == 'train': losses[r['iter']] = r['loss']
print(sorted(losses.items()))" "$1"
}

same_train_losses() {
  local a b
  a="$(train_losses "$1")" && b="$(train_losses "$2")" && [ "$a" != "[]" ] && [ "$a" = "$b" ]
}

holds() { "$py" -c "import sys; sys.exit(0 if ($1) else 1)"; }

check_eval_and_resume() {
  local metric="$1" value="$2" checkpoint="$3" config="$4"
  shift 4
  "$segrun" eval "$config" "$@" --checkpoint "$checkpoint" --json > eval.json 2> eval.log
  check "eval of the checkpoint exits 0" test $? -eq 0
  check "eval reproduces the run's $metric ($value)" holds "abs($(json eval.json "d['$metric']") - $value) < 1e-6"
  "$segrun" train "$config" "$@" --run-dir run --resume auto > again.log 2>&1
  check "resuming the finished run exits 0" test $? -eq 0
}

make_stores() {
  local dir="$1" layout="$2" train="$3" val="$4" size="$5" seed="$6" ranks="${7:-1}" split out splits
  "$segrun" data synth --layout "$layout" --out "$dir/raw" --train "$train" --val "$val" --size "$size" \
    --seed "$seed" > /dev/null || return 1
  splits="training validation"; [ "$layout" = cityscapes ] && splits="train val"
  for split in $splits; do
    out="$dir/train"; case "$split" in validation|val) out="$dir/val" ;; esac
    if [ "$ranks" -gt 1 ]; then
      "$segrun" launch -n "$ranks" -- data pack --layout "$layout" --root "$dir/raw" --split "$split" \
        --out "$out" --shards "$ranks" > /dev/null 2>&1 || return 1
    else
      "$segrun" data pack --layout "$layout" --root "$dir/raw" --split "$split" --out "$out" > /dev/null 2>&1 || return 1
    fi
  done
}

make_tiny_stores() { make_stores "$1" ade20k 8 4 64x80 3 "${2:-1}"; }

tiny_config() {
  printf '[data]\nstore = "%s"\n' "$1"
  if [ -n "${2:-}" ]; then printf 'val_store = "%s"\n' "$2"; fi
  printf 'crop = [64, 64]\nscale = [160, 64]\nbatch_per_rank = 2\nworkers = 1\n'
  printf '[model]\npretrained = "none"\nwidth = 8\nfpn_channels = 16\n'
}

# tiny_train_config TRAIN_STORE VAL_STORE ITERS WARMUP CHECKPOINT_INTERVAL EVAL_INTERVAL LOG_INTERVAL:
# tiny_config plus the [train] (lr 2e-3, backbone at the full rate) and [log] sections the CLI
# tests train with.
tiny_train_config() {
  tiny_config "$1" "$2"
  printf '[train]\niters = %s\nlr = 2e-3\nbackbone_lr_mult = 1.0\nwarmup_iters = %s\ncheckpoint_interval = %s\n' "$3" "$4" "$5"
  printf 'eval_interval = %s\n[log]\ninterval = %s\n' "$6" "$7"
}
