#!/usr/bin/env bash
# The collector against a VictoriaLogs v1.52.1 single node on the same
# machine, in one run (issue 15 items 3 and 4); each part prints its goals
# with met or MISSED:
#  1. ingest: the same loader (cmd/ingestload) posts the same ~560-byte
#     events, 1,000 per request over 8 connections, to `trailguard serve`
#     (durable acks, scrubbed, ECS-checked, deduplicated, indexed) and to
#     VictoriaLogs' /insert/jsonline, RUNS runs each, alternated (the order
#     rotating from round to round: the place in a round moves the figures); goals:
#     throughput >= 0.8x VictoriaLogs' (stretch 1.0x), p99 request time no
#     worse than VictoriaLogs'. It also prints each server's CPU time per
#     event and how far the collector's index was behind at the last answer.
#  2. storage: 200,000 events replayed from the demo's traffic stored by
#     both (cmd/storage); goal: the collector's whole data directory
#     (ledger segments, tiles, .idx, SQLite index) <= 3x VictoriaLogs'
#     bytes per event (stretch 2x).
# Settings: EVENTS (ingest, per run; default 1000000), RUNS (3),
# STORAGE_EVENTS (200000), ONLY (ingest or storage), BASE (another
# trailguard binary, e.g. main's build, run in the same alternated rounds
# and compared with this one). VictoriaLogs is built
# by .ci/victoria-logs.sh (cached). Exits 2 when a goal is missed. On a
# machine shared with other work the rates move by 2x from run to run:
# read the ratios (and the CPU per event), not the rates.
set -euo pipefail
# Settings are environment variables (RUNS=5 bash bench/victorialogs.sh); an argument, such as
# a setting written after the script's name, would be ignored without a word.
[ $# -eq 0 ] || { echo "$0: settings are environment variables, not arguments: NAME=value bash $0 (got: $*)" >&2; exit 2; }
cd "$(dirname "$0")"
VL=${VICTORIA_LOGS:-$(bash ../.ci/victoria-logs.sh)}
EVENTS=${EVENTS:-1000000}
RUNS=${RUNS:-3}
STORAGE_EVENTS=${STORAGE_EVENTS:-200000}
ONLY=${ONLY:-}
tmp=$(mktemp -d -t vsvl.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
(cd .. && go build -o "$tmp/trailguard" ./cmd/trailguard)
go build -o "$tmp/ingestload" ./cmd/ingestload
go build -o "$tmp/storage" ./cmd/storage
status=0
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
if [ -z "$ONLY" ] || [ "$ONLY" = ingest ]; then
	echo "== 1. ingest: trailguard serve vs VictoriaLogs, same loader and events"
	"$tmp/ingestload" -bin "$tmp/trailguard" -vl "$VL" ${BASE:+-base "$BASE"} -events "$EVENTS" -runs "$RUNS" 2> >(grep -v 'level=INFO' >&2) || status=$?
	echo
fi
if [ -z "$ONLY" ] || [ "$ONLY" = storage ]; then
	echo "== 2. storage: $STORAGE_EVENTS events of the demo's traffic in both"
	# storage exits 2 when it cannot judge (no segment compressed yet): its
	# figures and that reason are printed all the same.
	out=$("$tmp/storage" -bin "$tmp/trailguard" -vl "$VL" -events "$STORAGE_EVENTS" 2> >(grep -v 'level=INFO' >&2)) || status=$?
	echo "$out"
	if echo "$out" | grep -q '^goal: ≤ 3× VictoriaLogs: MISSED'; then
		status=2
	fi
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
