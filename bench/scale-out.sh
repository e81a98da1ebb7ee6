#!/usr/bin/env bash
# Scale-out figures of issue 14, in one run, each against its peer measured
# in the same run:
#  1. forwarding a ledger to a VictoriaLogs single node (cmd/forwardload)
#     vs a minimal loader posting the same pre-built NDJSON batches to a
#     VictoriaLogs started the same way; goals: >= 100k events/s and >= 0.8
#     of the loader;
#  2. the collector's own ingest (NDJSON, durable acks, indexed) vs
#     VictoriaLogs' ingest of the same events by the same loader
#     (cmd/ingestload), alternated; the ratio is stated (issue 15 sets the
#     goal).
# VictoriaLogs v1.52.1 is built by .ci/victoria-logs.sh (cached). Settings:
# EVENTS (ingest, default 1000000), FWD_EVENTS (default 500000), RUNS (3).
set -euo pipefail
cd "$(dirname "$0")"
VL=${VICTORIA_LOGS:-$(bash ../.ci/victoria-logs.sh)}
EVENTS=${EVENTS:-1000000}
FWD_EVENTS=${FWD_EVENTS:-500000}
RUNS=${RUNS:-3}
tmp=$(mktemp -d -t scaleout.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
(cd .. && go build -o "$tmp/trailguard" ./cmd/trailguard)
go build -o "$tmp/ingestload" ./cmd/ingestload
go build -o "$tmp/forwardload" ./cmd/forwardload

echo "== 1. forwarding from a ledger to VictoriaLogs ($FWD_EVENTS events, $RUNS runs)"
"$tmp/forwardload" -vl "$VL" -events "$FWD_EVENTS" -runs "$RUNS"

echo
echo "== 2. ingest of the same $EVENTS events by the same loader: trailguard serve vs VictoriaLogs (alternated, $RUNS runs)"
tg=() vl=() tgp99=() vlp99=()
rate() { sed -n 's/^rate: *\([0-9]*\) events\/s.*/\1/p'; }
p99() { sed -n 's/.*p99 \([^ ]*\) .*/\1/p'; }
for r in $(seq "$RUNS"); do
	out=$("$tmp/ingestload" -bin "$tmp/trailguard" -events "$EVENTS")
	tg+=("$(echo "$out" | rate)"); tgp99+=("$(echo "$out" | p99)")
	out=$("$tmp/ingestload" -vl "$VL" -events "$EVENTS")
	vl+=("$(echo "$out" | rate)"); vlp99+=("$(echo "$out" | p99)")
	echo "run $r: trailguard ${tg[-1]} events/s (p99 ${tgp99[-1]}), VictoriaLogs ${vl[-1]} events/s (p99 ${vlp99[-1]})"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mt=$(median "${tg[@]}") mv=$(median "${vl[@]}")
ratio=$(awk -v a="$mt" -v b="$mv" 'BEGIN {printf "%.2f", a/b}')
echo "medians: trailguard $mt events/s, VictoriaLogs $mv events/s: ratio $ratio (trailguard ÷ VictoriaLogs; issue 15 asks >= 0.8)"
