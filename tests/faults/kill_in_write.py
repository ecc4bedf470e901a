#!/usr/bin/python3
"""Fault injector: runs a command and SIGKILLs one process of it while a checkpoint is being
written, i.e. while "<checkpoint dir>/iter_<n>.pt.tmp-<pid>" exists (write_file_atomic's temp
file, between its creation and the rename), with n >= MIN_ITER. No hook in segrun: the
checkpoint folder is polled every 0.2 ms.

Usage: kill_in_write.py CKPT_DIR MIN_ITER VICTIM_RANK TIMEOUT_S -- COMMAND...
  VICTIM_RANK: -1 = the command's own process (a single-rank `segrun train`), else the process
  whose environment has OMPI_COMM_WORLD_RANK=VICTIM_RANK (a rank under `segrun launch`).
Prints one line "killed <victim> while writing <temp name> (<bytes> bytes written)" or
"no write seen"; exits with the command's exit code (the kill's effect on the command).
"""
import os
import re
import signal
import subprocess
import sys
import time

ckpt_dir, min_iter, victim_rank, timeout_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
command = sys.argv[sys.argv.index("--") + 1:]
temp_re = re.compile(r"^iter_(\d+)\.pt\.tmp-(\d+)$")


def rank_pid(rank, root):
    """pid of the process (a descendant of root) whose environment names this MPI rank."""
    want = b"OMPI_COMM_WORLD_RANK=%d" % rank
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                env = f.read().split(b"\0")
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if want in env and b"segrun" in cmdline and b"train" in cmdline and entry != str(root):
            return int(entry)
    return None


proc = subprocess.Popen(command)
deadline = time.monotonic() + timeout_s
victim = proc.pid
if victim_rank >= 0:
    while victim_rank >= 0 and time.monotonic() < deadline and proc.poll() is None:
        found = rank_pid(victim_rank, proc.pid)
        if found:
            victim = found
            break
        time.sleep(0.05)
message = "no write seen"
while proc.poll() is None and time.monotonic() < deadline:
    try:
        names = os.listdir(ckpt_dir)
    except OSError:
        names = []
    hit = next((n for n in names if temp_re.match(n) and int(temp_re.match(n).group(1)) >= min_iter), None)
    if hit:
        os.kill(victim, signal.SIGKILL)
        try:
            size = os.path.getsize(os.path.join(ckpt_dir, hit))
        except OSError:
            size = -1  # renamed between the poll and the kill: the write had completed
        message = "killed %s while writing %s (%d bytes written)" % (
            "pid %d" % victim if victim_rank < 0 else "rank %d (pid %d)" % (victim_rank, victim), hit, size)
        break
    time.sleep(0.0002)
try:
    code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
except subprocess.TimeoutExpired:
    proc.kill()
    code = proc.wait()
    message += "; the command hung and was killed"
print(message, flush=True)
sys.exit(code if code >= 0 else 128 - code)
