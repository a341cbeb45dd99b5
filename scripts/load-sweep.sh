#!/usr/bin/env bash
# Scaling curves of issue 6 with the load generator (release build): forwarded packets/s and
# packets per SFU CPU-second against subscribers (1..1000, one publisher) and against rooms
# (1..100, 2 publishers and 5 subscribers per room, each subscriber consuming both).
# Every point runs in a fresh process (so RSS is per point) at the same offered forwarding
# rate, REPEAT times. Writes CSV (docs/load-sweep.csv by default) and the SVG chart.
#
#   scripts/load-sweep.sh                      # defaults below
#   OUT_RATE=300000 DURATION=5 REPEAT=3 scripts/load-sweep.sh
#   MODE=signaling OUT_RATE=100000 scripts/load-sweep.sh   # through a real sfu-server
#
# Shapes that would be unrealistic at a high OUT_RATE are changed or skipped, and the log
# says so:
# - No publisher is asked for more than MAX_PUB_RATE packets/s (default 50,000: one
#   load-generator publisher sustains several times that, but a point should not rest on
#   one socket's burst behaviour). A subscribers point that would need more gets
#   ceil(rate / MAX_PUB_RATE) publishers, every subscriber receiving all of them (same
#   forwarding rate, more consumers: the CSV's publishers and consumers columns show it).
# - MODE=signaling: the server congestion-controls every subscriber, so a point is skipped
#   when one subscriber would receive more than MAX_SUB_MBPS (default 50 Mbit/s; the
#   server is started with a ceiling of 1.5 times each subscriber's stream).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_RATE=${OUT_RATE:-100000}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEAT=${REPEAT:-2}
MODE=${MODE:-embedded}
MAX_PUB_RATE=${MAX_PUB_RATE:-50000}
MAX_SUB_MBPS=${MAX_SUB_MBPS:-50}
PACKET_SIZE=${PACKET_SIZE:-1200}
SUBSCRIBERS=${SUBSCRIBERS:-"1 3 10 30 100 300 1000"}
ROOMS=${ROOMS:-"1 3 10 30 100"}
CSV=${CSV:-docs/load-sweep.csv}
SVG=${SVG:-docs/load-scaling.svg}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$MODE" in
  embedded) MODE_ARGS=() ;;
  signaling) MODE_ARGS=(--mode signaling) ;;
  *) echo "MODE must be embedded or signaling" >&2; exit 2 ;;
esac
# BIN=path/to/sfu-loadgen measures a binary built earlier (e.g. at a fixed commit); in the
# signaling mode the sfu-server next to it is started (or SERVER_BIN).
if [ -z "${BIN:-}" ]; then
  BIN="$CARGO_TARGET_DIR/release/sfu-loadgen"
  if [ "$MODE" = signaling ]; then
    cargo build --release -p sfu-loadgen -p sfu-server >&2
  else
    cargo build --release -p sfu-loadgen >&2
  fi
fi
if [ -n "${SERVER_BIN:-}" ]; then
  MODE_ARGS+=(--server-bin "$SERVER_BIN")
fi

echo -n "sweep,run," > "$CSV"
# The header line comes from the binary itself, so columns never drift from the code.
"$BIN" -s 1 -r 10 -d 0.2 --warmup 0 -q --csv --csv-header | sed -n 1p >> "$CSV"

# Bits of one forwarded datagram (RTP header, payload, GCM tag).
DATAGRAM_BITS=$(( (12 + PACKET_SIZE + 16) * 8 ))

point() { # sweep-name run subscribers-in-all args...
  local name=$1 run=$2 subscribers=$3; shift 3
  if [ "$MODE" = signaling ]; then
    # Packets/s one subscriber receives, in Mbit/s.
    local sub_mbps=$(( OUT_RATE * DATAGRAM_BITS / subscribers / 1000000 ))
    if [ "$sub_mbps" -gt "$MAX_SUB_MBPS" ]; then
      echo "== $name run $run: $* skipped: each subscriber would receive $sub_mbps Mbit/s (MAX_SUB_MBPS=$MAX_SUB_MBPS)" >&2
      return
    fi
  fi
  echo "== $name run $run: $*" >&2
  local row
  row=$("$BIN" "${MODE_ARGS[@]}" -q --csv -d "$DURATION" --warmup "$WARMUP" \
    --packet-size "$PACKET_SIZE" --out-rate "$OUT_RATE" "$@")
  echo "$name,$run,$row" >> "$CSV"
}

for run in $(seq 1 "$REPEAT"); do
  for s in $SUBSCRIBERS; do
    # One publisher at OUT_RATE / s, unless that is over MAX_PUB_RATE.
    p=$(( (OUT_RATE + s * MAX_PUB_RATE - 1) / (s * MAX_PUB_RATE) ))
    [ "$p" -ge 1 ] || p=1
    if [ "$p" -gt 1 ]; then
      echo "== subscribers=$s: $p publishers (one would send $(( OUT_RATE / s )) pkt/s > MAX_PUB_RATE=$MAX_PUB_RATE)" >&2
    fi
    point subscribers "$run" "$s" -p "$p" -s "$s"
  done
  for r in $ROOMS; do
    point rooms "$run" $(( r * 5 )) --rooms "$r" -p 2 -s 5
  done
done
python3 scripts/load-chart.py "$CSV" "$SVG"
echo "wrote $CSV and $SVG" >&2
