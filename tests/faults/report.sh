# Fault-suite bookkeeping (source it after tests/lib.sh). Every fault test counts its injected
# faults and the ones survived, prints "N faults injected, M survived" and leaves the same counts
# in $SEGRUN_FAULTS_REPORT_DIR/<test>.txt (set by ctest) for faults_summary.sh, which adds them up.
#   injected_fault OK WHAT    count one injected fault; OK = 0 survived, else print FAIL: WHAT
#   report_faults NAME        print the line, write the report file
injected=0
survived=0

injected_fault() {
  injected=$((injected + 1))
  if [ "$1" -eq 0 ]; then survived=$((survived + 1)); passed=$((passed + 1)); else echo "FAIL: fault not survived: $2"; failures=$((failures + 1)); fi
}

report_faults() {
  echo "$injected faults injected, $survived survived"
  if [ -n "${SEGRUN_FAULTS_REPORT_DIR:-}" ]; then
    mkdir -p "$SEGRUN_FAULTS_REPORT_DIR" && echo "$1 $injected $survived" > "$SEGRUN_FAULTS_REPORT_DIR/$1.txt"
  fi
}
