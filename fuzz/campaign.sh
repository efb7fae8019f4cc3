#!/usr/bin/env bash
# Runs one fuzz target for a fixed time, politely, without touching the committed
# seed corpus: new inputs go to a scratch corpus outside the repository, the seeds
# are read from fuzz/corpus/<target>/.
#
#   fuzz/campaign.sh <target> <seconds> [extra libFuzzer flags...]
#
# SCRATCH (default /tmp/conduit-fuzz) holds the grown corpus and the log; crash
# inputs go to fuzz/artifacts/<target>/ (ignored by git).
set -euo pipefail
target=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
scratch=${SCRATCH:-/tmp/conduit-fuzz}
mkdir -p "$scratch/corpus/$target" "$here/artifacts/$target"
cd "$here"
RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run "$target" \
    "$scratch/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$here/artifacts/$target/" "$@" \
    2>&1 | tee "$scratch/$target.log"
