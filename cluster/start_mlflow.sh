#!/usr/bin/env bash
# Start the MLflow tracking server on this (head) node, bound to 127.0.0.1 only. Idempotent.
#   MLFLOW_BACKEND    backend store URI (default sqlite:///$HOME/mlflow/mlflow.db; PostgreSQL:
#                     postgresql://farm@localhost/mlflow, see docs/cluster.md)
#   MLFLOW_ARTIFACTS  where artifacts go (default /shared/mlartifacts; s3://BUCKET/mlartifacts works)
#   MLFLOW_PORT       default 5000
set -euo pipefail
source "$HOME/farm-venv/bin/activate" 2>/dev/null || true
backend="${MLFLOW_BACKEND:-sqlite:///$HOME/mlflow/mlflow.db}"
artifacts="${MLFLOW_ARTIFACTS:-/shared/mlartifacts}"
port="${MLFLOW_PORT:-5000}"
if curl -fsS "http://127.0.0.1:${port}/health" >/dev/null 2>&1; then
  echo "MLflow already serving on 127.0.0.1:${port}"
  exit 0
fi
mkdir -p "$HOME/mlflow"
case "$artifacts" in /*) mkdir -p "$artifacts" ;; esac
# The server creates or upgrades the store once, here, before any worker logs.
setsid nohup mlflow server --host 127.0.0.1 --port "$port" --backend-store-uri "$backend" \
  --artifacts-destination "$artifacts" --workers 2 >"$HOME/mlflow/server.log" 2>&1 < /dev/null &
for _ in $(seq 60); do
  curl -fsS "http://127.0.0.1:${port}/health" >/dev/null 2>&1 && { echo "MLflow on 127.0.0.1:${port}"; exit 0; }
  sleep 1
done
echo "MLflow did not start; see $HOME/mlflow/server.log" >&2
tail -20 "$HOME/mlflow/server.log" >&2
exit 1
