#!/usr/bin/env bash
# Fault injection: flipped bytes inside two random records of a 2-shard store (written through
# h5py, so the HDF5 file stays valid and only the record bytes are wrong, like a disk bit rot).
#  - `data inspect --json` lists exactly those two records (shard file, index in the shard, name);
#  - training with data.on_corrupt = "fail" stops with one error naming a damaged record's shard
#    and index; on 2 ranks the run's status says it too (with the rank) and the rank's log keeps it;
#  - with data.on_corrupt = "skip" it completes, logs the skips and counts them in metrics.jsonl
#    (skipped_records): at least 1, at most 9 = 3 epochs x 3. The loader reads at most
#    (8 iterations + 4 prefetched batches) x 2 images = 24 samples = 3 epochs of 8 records; in an
#    epoch a damaged record is tried by its own slot and, when the record before it is damaged
#    too, by that slot's retry: at most 2 + 1 skips;
#  - `segrun eval` on the damaged store: "fail" stops naming a record, "skip" leaves exactly the
#    two damaged records out (skipped_records = 2 in its JSON, a warning for each).
# Usage: corrupt_record_test.sh SEGRUN_BINARY
set -uo pipefail
segrun="$(realpath "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../lib.sh"
. "$here/report.sh"
enter_work_dir corrupt-test

"$segrun" data synth --layout ade20k --out raw --train 8 --val 2 --size 64x80 --seed 3 > /dev/null 2>&1 \
  && "$segrun" data pack --root raw --split training --out train --shards 2 > /dev/null 2>&1 \
  || { echo "cannot make the store"; exit 1; }

# Damage one random record in each shard: 16 bytes in the middle of its image bytes.
RANDOM=5
damaged=$("$py" - "$RANDOM" <<'PY'
import glob, random, sys
import h5py
import numpy as np
random.seed(int(sys.argv[1]))
for path in sorted(glob.glob("train/*.h5")):
    with h5py.File(path, "r+") as f:
        offsets = f["images/offsets"][:]
        i = random.randrange(len(offsets) - 1)
        mid = (int(offsets[i]) + int(offsets[i + 1])) // 2
        data = f["images/bytes"]
        data[mid:mid + 16] = np.bitwise_xor(data[mid:mid + 16], 0xFF)
        name = f["name"][i].decode() if isinstance(f["name"][i], bytes) else str(f["name"][i])
    print("%s %d %s" % (path.split("/")[-1], i, name))
PY
)
echo "damaged records:"; echo "$damaged" | sed 's/^/  /'

# inspect finds exactly the damaged records.
"$segrun" data inspect train --json > inspect.json 2> inspect.err
listed=$(json inspect.json '"\n".join("%s %d %s" % (f["shard"].split("/")[-1], f["local"], f["name"])
                                     for f in d["integrity"]["crc_failures"])' 2>/dev/null)
ok=1
[ "$listed" = "$damaged" ] && ok=0
injected_fault $ok "inspect lists the damaged records (got: $listed)"

# on_corrupt = fail: one clear error naming a damaged record.
tiny_config train > tiny.toml
printf '[train]\niters = 8\nwarmup_iters = 0\ncheckpoint_interval = 0\neval_interval = 0\n[log]\ninterval = 1\n' >> tiny.toml
"$segrun" train tiny.toml --run-dir runs/fail > fail.out 2> fail.err
code=$?
pattern=$(echo "$damaged" | awk '{printf "%s%s: record %s \\(%s\\): CRC mismatch", (NR > 1 ? "|" : ""), $1, $2, $3}')
ok=1
[ "$code" -eq 1 ] && [ "$(grep -c '^segrun: error' fail.err)" -eq 1 ] && grep -qE "^segrun: error: .*($pattern)" fail.err \
  && ! grep -qE "terminate called|Segmentation|Aborted" fail.err && ok=0
injected_fault $ok "on_corrupt=fail: exit $code, $(grep '^segrun: error' fail.err)"

# The same on 2 ranks: the run's status says which record failed and on which rank, with that
# rank's log (rank 0 writes its own; the launcher another's), and that log keeps the error line.
"$segrun" launch -n 2 -- train tiny.toml --run-dir runs/fail2 > fail2.out 2> fail2.err
code=$?
ok=1
[ "$code" -ne 0 ] && grep -qE "^failed rank [01]: .*($pattern).*\(.*logs/rank-[01]\.log\)" runs/fail2/status \
  && grep -qE " error r[01]/2 .*($pattern)" runs/fail2/logs/rank-*.log && ok=0
injected_fault $ok "2 ranks: exit $code, status: $(head -c 200 runs/fail2/status)"
# What the launch says ends on the ranks' error lines: none of Open MPI's MPI_ABORT banner or
# help notes (cluster/mpirun_output.h).
check "the 2-rank launch's stderr has a rank's error line and no Open MPI banner" \
  bash -c "grep -qE '^segrun: error on rank [01]: .*($pattern)' fail2.err && ! grep -qE '^-{74}\$|MPI_ABORT|help message' fail2.err"

# on_corrupt = skip: completes, logs and counts the skips.
"$segrun" train tiny.toml data.on_corrupt=skip data.prefetch=4 --run-dir runs/skip > skip.out 2>&1
code=$?
skipped=$("$py" -c "
import json
print(max([json.loads(l).get('skipped_records', 0) for l in open('runs/skip/metrics.jsonl')] + [0]))" 2>/dev/null)
ok=1
[ "$code" -eq 0 ] && grep -q "corrupt records skipped" skip.out && [ "${skipped:-0}" -ge 1 ] && [ "${skipped:-0}" -le 9 ] && ok=0
injected_fault $ok "on_corrupt=skip: exit $code, skipped_records ${skipped:-none}"

# Evaluation on the damaged store: "fail" stops naming a damaged record; "skip" leaves exactly the
# two damaged records out, says so, and records the count.
"$segrun" eval runs/skip data.val_store=train data.on_corrupt=fail --no-record > evalfail.out 2> evalfail.err
code=$?
ok=1
[ "$code" -eq 1 ] && grep -qE "^segrun: error: .*($pattern)" evalfail.err && ok=0
injected_fault $ok "eval, on_corrupt=fail: exit $code, $(grep '^segrun: error' evalfail.err)"
"$segrun" eval runs/skip data.val_store=train data.on_corrupt=skip --no-record --json > evalskip.json 2> evalskip.err
code=$?
left_out=$(json evalskip.json 'd.get("skipped_records", 0)' 2>/dev/null)
ok=1
[ "$code" -eq 0 ] && [ "$left_out" = 2 ] && [ "$(grep -cE "($pattern); left out of the evaluation" evalskip.err)" -eq 2 ] && ok=0
injected_fault $ok "eval, on_corrupt=skip: exit $code, skipped_records ${left_out:-none}"
report_faults corrupt_record_test
finish corrupt_record_test
