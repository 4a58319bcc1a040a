#!/bin/bash
# churn.sh N: a process tree that changes fast. Runs /bin/true N times (a
# fork and an exec each, about a thousand a second), printing "progress I"
# every 500, then "ok churn N". Checkpoints land on children being forked,
# exec'ing, running, exiting and not yet reaped.
n=${1:-20000}
echo ready
i=0
while [ $i -lt $n ]; do
  /bin/true
  i=$((i + 1))
  if [ $((i % 500)) -eq 0 ]; then echo "progress $i"; fi
done
echo "ok churn $i"
