#!/bin/bash
# A/B: the socket engine before (dad433b, thread per peer) and after, interleaved.
for i in 1 2 3; do
  for v in old new; do
    if [ $v = old ]; then B=/tmp/old-conduit/bench/target/release/conduit-bench; else B=./bench/target/release/conduit-bench; fi
    $B --impl conduit-socket,raw,libzmq --transport ipc,tcp --mode lat,thr --size 64 --cores same,separate --rounds 1 --warmup-ms 100 --measure-ms 500 --json bench/results/engine/socket-64b-$v-$i.json > bench/results/engine/socket-64b-$v-$i.txt 2>&1
  done
done
