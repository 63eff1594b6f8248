#!/usr/bin/env bash
# Issue 16's acceptance, end to end through the CLI: N sessions (default 100,000) from the
# emulator exported to s3://exports/sessions on moto with --incremental --snapshot, SIGKILLed
# three times and re-run; then 300 sessions change (20 gain the custom field `region`) and an
# incremental run adds them; then pyarrow and DuckDB (httpfs) read parts, union and snapshot
# (scripts/s3_export_check.py), and moto must hold no open multipart upload.
#
#   scripts/s3-export-acceptance.sh            # BIN=target/debug/gleap-etl N=100000
# Needs python3 with moto[server], and .ci/.venv-duckdb (made by .ci/run) or PY= a Python with
# pyarrow, duckdb and duckdb-extension-httpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/gleap-etl}
N=${N:-100000}
PY=${PY:-.ci/.venv-duckdb/bin/python}
KILLS=${KILLS:-"1.5 1.5 1.5"}
# Slows the emulator so that each kill lands inside the export (pages of 250, 400 of them).
LATENCY_MS=${LATENCY_MS:-10}
work=$(mktemp -d)
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
moto_port=$(free_port)
gleap_port=$(free_port)
python3 -m moto.server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
export GLEAP_API_KEY=acceptance-key GLEAP_PROJECT_ID=65a0000000000000000000aa
"$BIN" emulator --addr "127.0.0.1:$gleap_port" --api-key "$GLEAP_API_KEY" --project "$GLEAP_PROJECT_ID" \
  --quota unlimited --latency-ms "$LATENCY_MS" --seed 16 --generate-sessions "$N" >"$work/emulator.log" 2>&1 &
emulator_pid=$!
trap 'kill $moto_pid $emulator_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -s -o /dev/null "http://127.0.0.1:$moto_port/" && curl -s -o /dev/null "http://127.0.0.1:$gleap_port/" && break
  sleep 0.1
done
curl -sf -X PUT "http://127.0.0.1:$moto_port/exports" >/dev/null
export AWS_ACCESS_KEY_ID=moto AWS_SECRET_ACCESS_KEY=moto-secret AWS_REGION=us-east-1 \
  AWS_ENDPOINT="http://127.0.0.1:$moto_port" AWS_ALLOW_HTTP=true \
  GLEAP_BASE_URL="http://127.0.0.1:$gleap_port/v3" GLEAP_REQUESTS_PER_MINUTE=6000000
export_cmd=("$BIN" export sessions --out s3://exports/sessions --incremental --snapshot
            --part-rows 10000 --page-size 250 --state-dir "$work/state" --report "$work/report.json" --no-progress)
manifest_rows() {
  "$PY" scripts/s3_export_check.py manifest "http://127.0.0.1:$moto_port" exports sessions 2>/dev/null \
    || echo "no manifest yet"
}
for after in $KILLS; do
  "${export_cmd[@]}" >"$work/run.log" 2>&1 &
  pid=$!
  sleep "$after"
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    echo "SIGKILL after ${after}s: manifest has $(manifest_rows)"
  else
    wait "$pid" || true
    echo "the run ended before ${after}s (no kill): $(tail -1 "$work/run.log")"
  fi
done
"${export_cmd[@]}" 2>&1 | tail -2
echo "after the re-run: manifest has $(manifest_rows)"
"$PY" scripts/s3_export_check.py change "$GLEAP_BASE_URL" 300 20 >"$work/changed.json"
"${export_cmd[@]}" 2>&1 | tail -2
echo "incremental run: $(python3 -c "import json; d=json.load(open('$work/report.json'))['streams'][0]['sink']['detail']; print('new_columns', d['new_columns'], 'type_changes', d['type_changes'])")"
"$PY" scripts/s3_export_check.py check "http://127.0.0.1:$moto_port" exports sessions "$N" "$work/changed.json" 20
open_uploads=$(curl -s "http://127.0.0.1:$moto_port/exports?uploads" | grep -o "<Upload>" | wc -l)
echo "open multipart uploads on moto: $open_uploads"
[[ $open_uploads -eq 0 ]]
echo "acceptance: passed"
