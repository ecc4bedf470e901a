#!/usr/bin/env bash
# The fault suite's total: adds up the "<test> <injected> <survived>" reports the fault tests of
# this ctest run left in REPORT_DIR (faults_reset empties it first; ctest fixtures order them) and
# prints "N faults injected, M survived". Fails when a reported fault was not survived or when no
# fault test reported.
# Usage: faults_summary.sh REPORT_DIR
set -uo pipefail
dir="$1"
total=0
ok=0
tests=0
for f in "$dir"/*.txt; do
  [ -e "$f" ] || continue
  read -r name injected survived < "$f"
  echo "  $name: $injected injected, $survived survived"
  total=$((total + injected))
  ok=$((ok + survived))
  tests=$((tests + 1))
done
echo "fault suite: $tests tests, $total faults injected, $ok survived"
echo "$total faults injected, $ok survived"
[ "$tests" -gt 0 ] && [ "$ok" -eq "$total" ]
