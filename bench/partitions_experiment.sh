#!/usr/bin/env bash
# Issue 20's closing experiment (docs/results.md): AMF, late and early fusion on the default synthetic set, every
# fold of 3 subject partitions x 2 seeds; AMF searched over modality dropout {0, 0.3} under the joint and the
# nested protocol; then the reports (corrected t over partitions and folds, Holm, the subject bootstrap).
#
#   bash bench/partitions_experiment.sh [OUT]     (OUT default runs/partitions; about an hour on 2 CPU cores)
#   SEEDS=1 bash bench/partitions_experiment.sh    (one seed: 9 Ray Train workers a trial instead of 18, ~1 GB each)
#
# Wall time of each sweep goes to OUT/wall.tsv; the sweeps' leaderboards to OUT/<sweep>.log.
set -euo pipefail
OUT=${1:-runs/partitions}
FARM=${FARM:-farm}
SEEDS=${SEEDS:-2}
mkdir -p "$OUT"
STORE="sqlite:///$(realpath "$OUT")/mlflow.db"
[ -f "$OUT/wall.tsv" ] || printf 'sweep\twall_s\n' > "$OUT/wall.tsv"
sweep() {  # name, then farm sweep's arguments; a sweep that finished before is not run again
  local name=$1; shift
  grep -q "^$name	" "$OUT/wall.tsv" && return 0
  local start; start=$(date +%s)
  $FARM sweep "$@" --seeds "$SEEDS" --name "$name" --storage "$OUT/sweeps" --tracking-uri "$STORE" > "$OUT/$name.log" 2>&1
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - start ))" >> "$OUT/wall.tsv"
}
sweep parts-amf-joint --space search_spaces/partitions_dropout.yaml --fusion amf
sweep parts-late-joint --space search_spaces/partitions_synthetic.yaml --fusion late
sweep parts-early-joint --space search_spaces/partitions_synthetic.yaml --fusion early
sweep parts-amf-nested --space search_spaces/partitions_dropout.yaml --fusion amf --protocol nested
for protocol in joint nested; do
  $FARM report --tracking-uri "$STORE" --sweep "parts-amf-$protocol" --sweep parts-late-joint \
    --sweep parts-early-joint --out "$OUT/report-$protocol" > "$OUT/report-$protocol.log" 2>&1 || true
done
cat "$OUT/wall.tsv"
