#!/usr/bin/env bash
# Two hosts, really (issue #21): two network namespaces joined by a veth pair stand in for two
# machines, hA = 10.77.0.1/24 and hB = 10.77.0.2/24, each with its own hostname (a UTS namespace)
# and its own sshd listening on its address only. `segrun launch -n 4 --hosts hA:2,hB:2 -- train`
# runs in hA; mpirun starts ranks 0-1 there and ranks 2-3 on hB over ssh, and Open MPI talks TCP
# over the veth only (btl self,tcp; oob and btl restricted to 10.77.0.0/24). The per-iteration
# losses must equal those of `segrun launch -n 4 -- train` on this one host (same world size, same
# global batch: only the transport and the placement differ). Nothing global is changed: hA and hB
# are resolved by a generated ssh_config handed to Open MPI's ssh (OMPI_MCA_plm_rsh_args="-F ..."),
# keys and sshd configs live in the work folder, and the EXIT trap removes the namespaces (and the
# veth with them), every process left inside them (sshd, orted, ranks) and the work folder.
# Needs root, `ip netns`, unshare and openssh-server; skipped (exit 77) otherwise.
# Usage: multihost_test.sh SEGRUN_BINARY
set -uo pipefail
segrun="$(realpath "$1")"
. "$(dirname "$0")/../lib.sh"
started=$SECONDS
TOL=1e-6
ITERS=6

skip() { echo "multihost_test: skipped ($*)"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
for tool in ip unshare hostname ssh ssh-keygen mpirun; do
  command -v "$tool" > /dev/null || skip "$tool not found"
done
sshd=/usr/sbin/sshd  # sshd must be started by its absolute path
[ -x "$sshd" ] || skip "no $sshd (apt-get install openssh-server)"

prefix=segrun-mh
nsA="$prefix-$$-a"
nsB="$prefix-$$-b"
work=""

drop_netns() {  # drop_netns NAME: stop every process inside, then delete it (the veth end goes too)
  local ns="$1" pids left i
  ip netns list 2> /dev/null | grep -q "^$ns\b" || return 0
  pids="$(ip netns pids "$ns" 2> /dev/null)"
  if [ -n "$pids" ]; then
    kill $pids 2> /dev/null
    for i in 1 2 3 4 5 6 7 8 9 10; do
      left="$(ip netns pids "$ns" 2> /dev/null)"
      [ -z "$left" ] && break
      sleep 0.2
    done
    left="$(ip netns pids "$ns" 2> /dev/null)"
    [ -n "$left" ] && kill -9 $left 2> /dev/null && sleep 0.2
  fi
  ip netns del "$ns" 2> /dev/null
}
cleanup() {
  drop_netns "$nsA"
  drop_netns "$nsB"
  if [ -n "$work" ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# What an earlier run left when it was killed before its trap could run (ctest's timeout kills
# hard): its namespaces (with the sshds, orted and ranks inside) and its work folder, both named
# by its pid.
for ns in $(ip netns list 2> /dev/null | awk '{print $1}' | grep "^$prefix-[0-9]*-[ab]$"); do
  owner="${ns#$prefix-}"; owner="${owner%-*}"
  if ! kill -0 "$owner" 2> /dev/null; then
    drop_netns "$ns"
    rm -rf /tmp/segrun-multihost-"$owner".*
  fi
done

if ! ip netns add "$nsA" 2> /dev/null || ! ip netns add "$nsB" 2> /dev/null; then
  skip "cannot create network namespaces here (ip netns add failed)"
fi
ip netns exec "$nsA" unshare --uts true 2> /dev/null || skip "cannot create a UTS namespace (unshare --uts)"

work="$(mktemp -d "/tmp/segrun-multihost-$$.XXXXXX")" || exit 1
cd "$work" || exit 1

# 1. The wire: vA in hA <-> vB in hB (created inside the namespaces: no name in the host's own).
addrA=10.77.0.1
addrB=10.77.0.2
net=10.77.0.0/24
ip -n "$nsA" link add vA type veth peer name vB netns "$nsB" || { echo "FAIL: cannot create the veth pair"; exit 1; }
ip -n "$nsA" addr add "$addrA/24" dev vA && ip -n "$nsB" addr add "$addrB/24" dev vB \
  && ip -n "$nsA" link set lo up && ip -n "$nsB" link set lo up \
  && ip -n "$nsA" link set vA up && ip -n "$nsB" link set vB up || { echo "FAIL: cannot configure the veth pair"; exit 1; }

# 2. Keys and an sshd per host (each in its namespace, hostname set in its own UTS namespace).
mkdir -p ssh && chmod 700 ssh
ssh-keygen -q -t ed25519 -N "" -C segrun-multihost -f ssh/id > /dev/null || exit 1
cp ssh/id.pub ssh/authorized_keys
mkdir -p /run/sshd  # sshd's privilege-separation directory (the ssh service would create it)
cat > ssh/config <<EOF
Host hA
  HostName $addrA
Host hB
  HostName $addrB
Host *
  User root
  IdentityFile $work/ssh/id
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  GlobalKnownHostsFile /dev/null
  BatchMode yes
  ConnectTimeout 10
  LogLevel ERROR
EOF
start_sshd() {  # start_sshd NS HOSTNAME ADDRESS
  local ns="$1" name="$2" addr="$3"
  ssh-keygen -q -t ed25519 -N "" -f "ssh/host_$name" > /dev/null || return 1
  cat > "ssh/sshd_$name.conf" <<EOF
ListenAddress $addr
Port 22
HostKey $work/ssh/host_$name
PidFile $work/ssh/sshd_$name.pid
AuthorizedKeysFile $work/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
LogLevel INFO
EOF
  ip netns exec "$ns" unshare --uts sh -c 'hostname "$1" && exec "$2" -D -f "$3" -E "$4"' \
    sh "$name" "$sshd" "$work/ssh/sshd_$name.conf" "$work/ssh/sshd_$name.log" &
}
start_sshd "$nsA" hA "$addrA" && start_sshd "$nsB" hB "$addrB" || { echo "FAIL: cannot start sshd"; exit 1; }

# Each host reaches the other by name (up to 10 s while the sshds start).
reach() {  # reach FROM_NS TO_HOST: prints the remote hostname
  ip netns exec "$1" ssh -F "$work/ssh/config" "$2" hostname 2> /dev/null
}
for i in $(seq 50); do
  [ "$(reach "$nsA" hB)" = hB ] && [ "$(reach "$nsB" hA)" = hA ] && break
  sleep 0.2
done
check "ssh from hA to hB lands on hB" test "$(reach "$nsA" hB)" = hB
check "ssh from hB to hA lands on hA" test "$(reach "$nsB" hA)" = hA
if [ "$failures" -gt 0 ]; then
  echo "sshd logs:"; tail -n 5 ssh/sshd_*.log
  finish multihost_test; exit 1
fi
accepted_before="$(grep -c "Accepted publickey" ssh/sshd_hB.log)"

# 3. The same 4-rank training on one host and on two.
make_tiny_stores "$work" || { echo "cannot make the tiny stores"; exit 1; }
tiny_train_config "$work/train" "" "$ITERS" 0 0 0 1 > tiny.toml
args=(train "$work/tiny.toml" train.seed=3 data.workers=1)

t0=$SECONDS
"$segrun" launch -n 4 -- "${args[@]}" --run-dir "$work/one-host" > one-host.log 2>&1
code=$?
one_s=$((SECONDS - t0))
check "4 ranks on one host train (exit $code, ${one_s} s)" test "$code" -eq 0 -a -s "$work/one-host/metrics.jsonl"

wire_bytes() {  # bytes through hA's end of the veth, both directions
  local tx rx
  tx="$(ip netns exec "$nsA" cat /sys/class/net/vA/statistics/tx_bytes)"
  rx="$(ip netns exec "$nsA" cat /sys/class/net/vA/statistics/rx_bytes)"
  echo $((tx + rx))
}
bytes_before="$(wire_bytes)"
t0=$SECONDS
ip netns exec "$nsA" unshare --uts sh -c 'hostname hA && exec "$@"' sh \
  env OMPI_MCA_plm_rsh_agent=ssh \
      OMPI_MCA_plm_rsh_args="-F $work/ssh/config" \
      OMPI_MCA_plm_rsh_no_tree_spawn=1 \
      OMPI_MCA_btl=self,tcp \
      OMPI_MCA_btl_tcp_if_include="$net" \
      OMPI_MCA_oob_tcp_if_include="$net" \
      OMPI_MCA_rmaps_base_display_map=1 \
      OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  "$segrun" launch -n 4 --hosts hA:2,hB:2 -- "${args[@]}" --run-dir "$work/two-hosts" > two-hosts.log 2>&1
code=$?
two_s=$((SECONDS - t0))
wire=$(( $(wire_bytes) - bytes_before ))
check "4 ranks on hA:2,hB:2 train (exit $code, ${two_s} s)" test "$code" -eq 0 -a -s "$work/two-hosts/metrics.jsonl"
if [ "$code" -ne 0 ]; then
  echo "--- two-hosts.log (last 40 lines):"; tail -n 40 two-hosts.log
  echo "--- sshd hB log:"; tail -n 10 ssh/sshd_hB.log
fi

# mpirun's map: two ranks on each host; hB's ranks came in through hB's sshd, from hA's address.
map="$("$py" - two-hosts.log <<'PY'
import re, sys
text = open(sys.argv[1]).read()
nodes = re.findall(r"Data for node: (\S+)\s+Num slots: \d+\s+Max slots: \d+\s+Num procs: (\d+)", text)
print(" ".join(f"{n}:{p}" for n, p in nodes))
PY
)"
echo "mpirun's map: ${map:-(none)}"
check "mpirun placed 2 ranks on hA and 2 on hB (map: $map)" test "$map" = "hA:2 hB:2"
accepted_after="$(grep -c "Accepted publickey for root from $addrA" ssh/sshd_hB.log)"
check "mpirun logged into hB over ssh from $addrA" test "$accepted_after" -gt "$accepted_before"
check "hA's rank 0 ran on hA" grep -q "rank 0/4 on hA" two-hosts.log
check "the ranks' traffic crossed the veth ($wire bytes during the run, more than 1 MB)" test "$wire" -gt 1000000

# 4. Same losses, iteration by iteration.
compare() {
  "$py" - "$work/one-host/metrics.jsonl" "$work/two-hosts/metrics.jsonl" "$TOL" "$ITERS" <<'PY'
import json, sys
a, b, tol, iters = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
def rows(path):
    return {r["iter"]: r for r in map(json.loads, open(path)) if r["mode"] == "train"}
ra, rb = rows(a), rows(b)
print("one host  (4 ranks):     ", [ra[i]["loss"] for i in sorted(ra)])
print("two hosts (hA:2, hB:2):  ", [rb[i]["loss"] for i in sorted(rb)])
keys = [k for k in next(iter(ra.values()), {}) if k == "loss" or k.startswith("loss_")]
worst, where, identical = 0.0, "", True
for it in sorted(set(ra) & set(rb)):
    for k in keys:
        x, y = ra[it][k], rb[it].get(k, float("nan"))
        identical &= x == y
        gap = abs(x - y) / max(abs(x), 1e-12) if y == y else float("inf")
        if gap > worst: worst, where = gap, f" (iteration {it} {k}: {x!r} vs {y!r})"
ok = len(ra) == iters and sorted(ra) == sorted(rb) and worst <= tol
print(f"{len(ra)} vs {len(rb)} iterations; parts {', '.join(keys)}; "
      + ("bitwise identical" if identical else f"largest relative gap {worst:.2e}{where}"))
sys.exit(0 if ok else 1)
PY
}
check "every train loss agrees to $TOL (relative)" compare

echo "multihost_test: one host ${one_s} s, two hosts ${two_s} s, whole test $((SECONDS - started)) s"
finish multihost_test
