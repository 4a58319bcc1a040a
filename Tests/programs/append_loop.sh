#!/bin/bash
# append_loop.sh N - a script that appends to its results files the shell way:
# each `>>` opens, writes and closes, so between two lines nobody holds them
# open. big.log is bigger than what a checkpoint stores whole (4 MiB).
set -e
head -c 5000000 /dev/zero | tr '\0' 'x' > big.log
echo >> big.log
for i in $(seq 1 "$1"); do
  echo "line $i" >> results.txt
  echo "entry $i" >> big.log
  sleep 0.1
done
echo "ok appended $1 lines"
