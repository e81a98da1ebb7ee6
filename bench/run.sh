#!/usr/bin/env bash
# Runs the middleware benchmarks five times and prints, from the medians,
# each middleware's ns/op and allocs/op and how the peers compare with
# httpaudit. The raw `go test` output is kept in $OUT (default: a temp
# file). Exits 2 when httpaudit misses a goal of the issue.
set -euo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-$(mktemp -t trailguard-bench.XXXXXX)}
table=$(mktemp -t benchtable.XXXXXX)
trap 'rm -f "$table"' EXIT
go build -o "$table" ./cmd/benchtable
go test -run '^$' -bench . -benchmem -count 5 ./... | tee "$OUT"
echo "raw results: $OUT"
"$table" < "$OUT"
