#!/bin/bash
# append_loop.sh - a script that appends to its results files the shell way:
# each `>>` opens, writes and closes, so between two lines nobody holds them
# open. For each number read from stdin it appends a line to results.txt
# and to big.log (bigger than what a checkpoint stores whole, 4 MiB), then
# says "did N"; "end" ends it.
set -e
head -c 5000000 /dev/zero | tr '\0' 'x' > big.log
echo >> big.log
echo ready
while read -r i; do
  [ "$i" = end ] && break
  echo "line $i" >> results.txt
  echo "entry $i" >> big.log
  echo "did $i"
done
echo "ok appended"
