#!/usr/bin/env bash
# Runs the middleware benchmarks RUNS times (default 5), alternating: each
# round runs every benchmark once, so that a burst of load on a shared
# machine hits all of them rather than five runs of one. Prints, from the
# medians, each middleware's ns/op, cpu-ns/op and allocs/op and how the
# peers compare with httpaudit, with the goals met or missed. The raw
# output is kept in $OUT (default: a temp file). Exits 2 when httpaudit
# misses a goal. With LOCK set to a file, the rounds (not the builds) run
# holding flock on it, so that measurements on a shared machine take turns.
# With BASE set to a git revision (BASE=main, BASE=HEAD~1), httpaudit's
# benchmarks of that revision are built too and run in every round next
# to the current ones (which goes first alternates), printed as
# BaseHTTPAudit: a change's effect measured under the same load.
set -euo pipefail
# Settings are environment variables (RUNS=5 bash bench/run.sh); an argument, such as
# a setting written after the script's name, would be ignored without a word.
[ $# -eq 0 ] || { echo "$0: settings are environment variables, not arguments: NAME=value bash $0 (got: $*)" >&2; exit 2; }
cd "$(dirname "$0")"
RUNS=${RUNS:-5}
OUT=${OUT:-$(mktemp -t trailguard-bench.XXXXXX)}
tmp=$(mktemp -d -t benchrun.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/benchtable" ./cmd/benchtable
go test -c -o "$tmp/bench.test" .
if [[ -n ${BASE:-} ]]; then
	mkdir "$tmp/base"
	git -C .. archive "$BASE" | tar -x -C "$tmp/base"
	(cd "$tmp/base/bench" && go test -c -o "$tmp/base.test" .)
fi
: > "$OUT"
if [[ -n ${LOCK:-} ]]; then
	exec 9>"$LOCK"
	echo "waiting for $LOCK" >&2
	flock 9
fi
echo "load: $(uptime)" >&2
for i in $(seq "$RUNS"); do
	echo "round $i of $RUNS" >&2
	current() { "$tmp/bench.test" -test.run '^$' -test.bench . -test.benchmem -test.count 1 ${BENCHTIME:+-test.benchtime "$BENCHTIME"}; }
	# The base runs the whole list too and keeps only httpaudit's lines:
	# run alone, its first benchmark would be the fresh process's first
	# (heap growth, cold caches), a bias of ~10 % seen in the twentieth
	# session against the current build's, which runs after Baseline.
	base() {
		"$tmp/base.test" -test.run '^$' -test.bench . -test.benchmem -test.count 1 ${BENCHTIME:+-test.benchtime "$BENCHTIME"} |
			awk '!/^Benchmark/ || /^BenchmarkHTTPAudit/' |
			sed 's/^BenchmarkHTTPAudit/BenchmarkBaseHTTPAudit/'
	}
	if [[ -z ${BASE:-} ]]; then
		current | tee -a "$OUT"
	elif ((i % 2)); then
		{ current; base; } | tee -a "$OUT"
	else
		{ base; current; } | tee -a "$OUT"
	fi
done
echo "load: $(uptime)" >&2
if [[ -n ${LOCK:-} ]]; then
	exec 9>&-
fi
echo "raw results: $OUT"
"$tmp/benchtable" < "$OUT"
