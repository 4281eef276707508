#!/bin/bash
# Usage: bash benchmarks/quiet_calibration.sh BENCH_PID LOG
# For a shared machine: while `benchmarks/methods.py` (process BENCH_PID, printing to LOG) runs, pause every
# other python process for the first 75 s of each method (data loading and the timed calibration of its
# training step, which fixes its epochs), then let them continue where they were. The epochs are then those a
# quiet machine gives; the pretraining wall time and the recorded load averages still show the sharing.
# Used for the rows added in session 5 (vicreg, barlow-twins, dino, nnclr, swav); a quiet machine needs none.
BENCH=$1; LOG=$2; seen=0
while kill -0 "$BENCH" 2>/dev/null; do
  n=$(grep -c "pretraining for" "$LOG")
  if [ "$n" -gt "$seen" ]; then
    seen=$n
    pids=$(pgrep python | grep -v -x -e "$BENCH")
    echo "$(date +%T) pausing $(echo $pids | wc -w) processes for method $n"
    [ -n "$pids" ] && kill -STOP $pids
    sleep 75
    [ -n "$pids" ] && kill -CONT $pids
  fi
  sleep 2
done
