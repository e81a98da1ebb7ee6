#!/usr/bin/env bash
# A VictoriaLogs cluster on one machine, for trying trailguard's forwarding
# (the layout of forward/victorialogs_test.go and docs/scale-out.md): two
# storage nodes, an insert node and a select node — the same binary with
# different flags. In production each runs on its own host (or several
# insert/select nodes behind a load balancer), with the storage nodes'
# ports reachable only from the insert and select nodes.
#
#   bash deploy/victorialogs/cluster.sh [DIR]     # Ctrl-C stops all four
#   trailguard serve --config deploy/victorialogs/serve-outputs.yaml
#
# The binary: bash .ci/victoria-logs.sh (builds v1.52.1 from the Go module
# proxy), or VICTORIA_LOGS=/path/to/victoria-logs.
set -euo pipefail
VL=${VICTORIA_LOGS:-$(bash "$(dirname "$0")/../../.ci/victoria-logs.sh")}
# A DIR given is the user's and kept; a temporary one is removed on every
# way out (Ctrl-C, SIGTERM, a node that fails, an error of this script).
made=
if [ $# -gt 0 ]; then
	DIR=$1
else
	DIR=$(mktemp -d -t vlcluster.XXXXXX)
	made=$DIR
fi
common=(-retentionPeriod=400d -loggerLevel=WARN)
pids=()
cleanup() {
	trap - EXIT INT TERM
	if [ ${#pids[@]} -gt 0 ]; then
		kill "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	if [ -n "$made" ]; then
		rm -rf "$made"
	fi
}
trap cleanup EXIT
# A signal ends the script (the EXIT trap then cleans up): trapped without
# exit, the script went back to its wait and the cleanup ran twice.
trap 'exit 130' INT
trap 'exit 143' TERM
# Storage nodes: plain single nodes that keep the data.
"$VL" -httpListenAddr=127.0.0.1:9491 -storageDataPath="$DIR/storage-1" "${common[@]}" & pids+=($!)
"$VL" -httpListenAddr=127.0.0.1:9492 -storageDataPath="$DIR/storage-2" "${common[@]}" & pids+=($!)
nodes=-storageNode=127.0.0.1:9491,127.0.0.1:9492
# Insert node: spreads rows over the storage nodes. NB: with every storage
# node down it still answers 200 and holds rows in memory; trailguard's
# victorialogs output therefore confirms by query (verify_url) before it
# moves its cursor.
"$VL" -httpListenAddr=127.0.0.1:9481 -storageDataPath="$DIR/insert" "$nodes" -select.disable "${common[@]}" & pids+=($!)
# Select node: queries every storage node (502 if one is down, unless
# allow_partial_response=1: trailguard's verification never allows it).
"$VL" -httpListenAddr=127.0.0.1:9471 -storageDataPath="$DIR/select" "$nodes" -insert.disable "${common[@]}" & pids+=($!)
echo "VictoriaLogs cluster in $DIR: insert http://127.0.0.1:9481, select http://127.0.0.1:9471"
# Until the first node ends (a port in use, a crash): the cluster is not
# whole without it, so the others are stopped too. Checked every second
# rather than by 'wait -n': a node that ends before wait -n starts may
# already be gone from bash's job table, and wait -n then waits for the
# other three for good. 'sleep 1 & wait' rather than 'sleep 1', so that a
# trapped INT or TERM ends the wait at once.
while :; do
	for p in "${pids[@]}"; do
		if ! kill -0 "$p" 2>/dev/null; then
			status=0
			wait "$p" || status=$?
			echo "cluster.sh: node pid $p ended (status $status): stopping the others" >&2
			exit $((status == 0 ? 1 : status))
		fi
	done
	sleep 1 &
	wait $! || true
done
