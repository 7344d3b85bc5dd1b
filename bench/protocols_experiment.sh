#!/usr/bin/env bash
# Issue 14's closing experiment (docs/results.md): AMF, late and early fusion, 3 seeds per fold, joint and
# nested protocols, on the default synthetic set; then the report with paired subject-bootstrap intervals.
#
#   bash bench/protocols_experiment.sh [OUT]      (OUT default runs/protocols; about an hour on 2 CPU cores)
#
# Wall time of each sweep goes to OUT/wall.tsv; the sweeps' leaderboards to OUT/<sweep>.log.
set -euo pipefail
OUT=${1:-runs/protocols}
FARM=${FARM:-farm}
mkdir -p "$OUT"
STORE="sqlite:///$(realpath "$OUT")/mlflow.db"
printf 'sweep\tprotocol\tfusion\twall_s\n' > "$OUT/wall.tsv"
for protocol in joint nested; do
  for fusion in amf late early; do
    name="protocols-$fusion-$protocol"
    start=$(date +%s)
    $FARM sweep --space search_spaces/protocols_synthetic.yaml --fusion "$fusion" --protocol "$protocol" \
      --name "$name" --storage "$OUT/sweeps" --tracking-uri "$STORE" > "$OUT/$name.log" 2>&1
    printf '%s\t%s\t%s\t%s\n' "$name" "$protocol" "$fusion" "$(( $(date +%s) - start ))" >> "$OUT/wall.tsv"
  done
done
$FARM report --tracking-uri "$STORE" --sweep protocols-amf-joint --sweep protocols-late-joint \
  --sweep protocols-early-joint --out "$OUT/report-joint" > "$OUT/report-joint.log" 2>&1
cat "$OUT/wall.tsv"
