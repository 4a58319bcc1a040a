#!/bin/bash
# A batch script as the job: a loop of programs, a pipeline, a background job
# and wait; the test checkpoints it while a child runs, kills it, resumes it,
# and compares the output file with an uninterrupted run's.
out=${1:-out.txt}
exec 3> "$out"   # open for the whole script: its size at the checkpoint is known
echo ready
for i in 1 2 3 4; do
  seq 1 $((i * 20000)) | awk '{ s += $1 } END { print s }' | tr '0' 'o' >&3
  sleep 1
done
( sleep 1; echo "background $((6 * 7))" >&3 ) &
wait
echo "done" >&3
echo "ok script"
