#!/usr/bin/env bash
# Scaling curves of issue 6 with the load generator (release build): forwarded packets/s and
# packets per SFU CPU-second against subscribers (1..1000, one publisher) and against rooms
# (1..100, 2 publishers and 5 subscribers per room, each subscriber consuming both).
# Every point runs in a fresh process (so RSS is per point) at the same offered forwarding
# rate, REPEAT times. Writes CSV (docs/load-sweep.csv by default) and the SVG chart.
#
#   scripts/load-sweep.sh                      # defaults below
#   OUT_RATE=150000 DURATION=5 REPEAT=3 scripts/load-sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_RATE=${OUT_RATE:-100000}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEAT=${REPEAT:-2}
SUBSCRIBERS=${SUBSCRIBERS:-"1 3 10 30 100 300 1000"}
ROOMS=${ROOMS:-"1 3 10 30 100"}
CSV=${CSV:-docs/load-sweep.csv}
SVG=${SVG:-docs/load-scaling.svg}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
# BIN=path/to/sfu-loadgen measures a binary built earlier (e.g. at a fixed commit).
if [ -z "${BIN:-}" ]; then
  BIN="$CARGO_TARGET_DIR/release/sfu-loadgen"
  cargo build --release -p sfu-loadgen >&2
fi

echo -n "sweep,run," > "$CSV"
# The header line comes from the binary itself, so columns never drift from the code.
"$BIN" -s 1 -r 10 -d 0.2 --warmup 0 -q --csv --csv-header | sed -n 1p >> "$CSV"

point() { # sweep-name run args...
  local name=$1 run=$2; shift 2
  echo "== $name run $run: $*" >&2
  local row
  row=$("$BIN" -q --csv -d "$DURATION" --warmup "$WARMUP" --out-rate "$OUT_RATE" "$@")
  echo "$name,$run,$row" >> "$CSV"
}

for run in $(seq 1 "$REPEAT"); do
  for s in $SUBSCRIBERS; do
    point subscribers "$run" -p 1 -s "$s"
  done
  for r in $ROOMS; do
    point rooms "$run" --rooms "$r" -p 2 -s 5
  done
done
python3 scripts/load-chart.py "$CSV" "$SVG"
echo "wrote $CSV and $SVG" >&2
