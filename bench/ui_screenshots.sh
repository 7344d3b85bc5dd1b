#!/usr/bin/env bash
# The screenshots of docs/mlflow_ui.md: a smoke sweep and its promotion, `mlflow ui` on 127.0.0.1, and Debian's
# headless Chromium (apt-get install chromium). About 5 minutes on 2 cores.
#
#   bash bench/ui_screenshots.sh [WORK] [OUT]      (WORK default /tmp/farm-ui, OUT default docs/img)
set -euo pipefail
WORK=${1:-/tmp/farm-ui}
OUT=$(realpath "${2:-docs/img}")
PORT=${PORT:-5055}
mkdir -p "$WORK/tmp" "$OUT"
export TMPDIR="$WORK/tmp"
STORE="sqlite:///$WORK/mlflow.db"
farm data synth --out "$WORK/data" --subjects 6 --tasks 1 --frames 24 --size 32 > /dev/null
farm sweep --data "$WORK/data" --storage "$WORK/sweeps" --tracking-uri "$STORE" --name smoke-demo --trials 2 | tee "$WORK/sweep.log"
farm promote --sweep smoke-demo --tracking-uri "$STORE" --model-name amf-synthetic > "$WORK/promote.log"
mlflow ui --backend-store-uri "$STORE" --host 127.0.0.1 --port "$PORT" --workers 1 > "$WORK/ui.log" 2>&1 &
UI=$!
trap 'kill $UI' EXIT
until curl -sf "http://127.0.0.1:$PORT/health" > /dev/null; do sleep 1; done
read -r EXP BEST < <(python - "$STORE" <<'PY'
import sys
from mlflow.tracking import MlflowClient
c = MlflowClient(sys.argv[1])
e = c.get_experiment_by_name("smoke-demo")
print(e.experiment_id, c.search_runs([e.experiment_id], filter_string="tags.best = 'true'")[0].info.run_id)
PY
)
shot() {  # name, height, page
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="1400,$2" \
    --virtual-time-budget=30000 --screenshot="$WORK/$1.png" "http://127.0.0.1:$PORT/#/$3" > /dev/null 2>&1
  python -c "from PIL import Image; im = Image.open('$WORK/$1.png').convert('RGB'); im.thumbnail((1000, 10000)); \
im.quantize(64).save('$OUT/mlflow_$1.png', optimize=True)"
}
shot runs 700 "experiments/$EXP/runs?workflowType=machine_learning"
shot trial 1500 "experiments/$EXP/runs/$BEST?workflowType=machine_learning"
shot model 1300 "models/amf-synthetic/versions/1?workflowType=machine_learning"
ls -la "$OUT"/mlflow_*.png
