#!/usr/bin/env bash
# The helpdesk pipelines against the embedded emulator on a bad day: faults (5XX, resets,
# lost answers) with no quirk and with each quirk, each pipeline run twice into the same
# state. Prints, per case, the exit codes, what the emulator holds after the second run,
# duplicates (userIds, ticket import markers, messages) and messages out of thread order,
# and the requests the second run sent.
#
#   scripts/emulator-loop.sh            # BIN=target/debug/gleap-etl
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/gleap-etl}
FAULTS=${FAULTS:-0.05,0.02,0.01}
QUIRKS=("" page-cap=50 ignore-skip ignore-filter=email index-lag-ms=2000
        ignore-filter=customData.importId ignore-filter=ticket)
failed=0
for pipeline in zendesk_to_gleap intercom_to_gleap csv-to-gleap; do
  for quirk in "${QUIRKS[@]}"; do
    state=$(mktemp -d)
    args=(run "pipelines/$pipeline.yaml" --emulator --emulator-faults "$FAULTS" --no-progress)
    [[ -n $quirk ]] && args+=(--emulator-quirks "$quirk")
    STATE_DIR=$state "$BIN" "${args[@]}" >"$state/first.log" 2>&1; first=$?
    STATE_DIR=$state "$BIN" "${args[@]}" >"$state/second.log" 2>&1; second=$?
    requests=$(grep -o "[0-9,]* requests (" "$state/second.log" | tr -d ',(' | awk '{s+=$1} END {print s+0}')
    counts=$(python3 - "$state/emulator.json" <<'PY'
import collections, json, sys
d = json.load(open(sys.argv[1]))
s, t, m = d["sessions"], d["tickets"], d["messages"]
dup = lambda keys: sum(n - 1 for n in collections.Counter(k for k in keys if k is not None).values())
users = dup(x.get("userId") for x in s)
imports = dup((x.get("customData") or {}).get("importId") for x in t)
msgs = dup((x.get("ticket"), json.dumps(x.get("comment"), sort_keys=True), x.get("session"),
            x.get("isNote")) for x in m)
print(f"{len(s)}/{len(t)}/{len(m)} dup user/import/msg {users}/{imports}/{msgs}")
PY
)
    order=$(grep -o "[0-9]* messages created out of thread order" "$state/second.log" | head -1)
    printf '%-18s %-36s exit %s,%s  %s  %s  2nd run %s requests\n' "$pipeline" "${quirk:-none}" \
      "$first" "$second" "$counts" "${order:-?}" "$requests"
    { [[ $first -eq 0 && $second -eq 0 ]] && [[ $counts == *"0/0/0" ]] && [[ $order == 0* ]]; } || failed=$((failed + 1))
  done
done
echo "cases failing: $failed"
[[ $failed -eq 0 ]]
