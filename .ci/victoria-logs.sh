#!/usr/bin/env bash
# Builds VictoriaLogs (the distributed log engine the forwarding tests and
# benchmarks run against) from the Go module proxy, once per version, and
# prints the path of the binary. The build happens in a tools module outside
# this repository's module graph, so VictoriaLogs never becomes a dependency
# of trailguard; the binary is cached as $CACHE/bin/victoria-logs-VERSION
# with a victoria-logs link to it (what internal/testenv finds through
# TRAILGUARD_TOOLS). Cold: ~2.5 min and ~81 MB of downloads; warm: instant.
#
#   bash .ci/victoria-logs.sh            # uses ~/.cache/trailguard-ci
#   export TRAILGUARD_TOOLS=~/.cache/trailguard-ci/bin
set -euo pipefail
VERSION=${VICTORIALOGS_VERSION:-v1.52.1}
CACHE=${TRAILGUARD_CI_CACHE:-$HOME/.cache/trailguard-ci}
bin="$CACHE/bin/victoria-logs-$VERSION"
if [ ! -x "$bin" ]; then
	tools="$CACHE/tools/victorialogs-$VERSION"
	mkdir -p "$tools" "$CACHE/bin"
	(
		cd "$tools"
		[ -f go.mod ] || go mod init trailguard-ci-tools/victorialogs >/dev/null 2>&1
		# -tool records the command and every module it needs in go.sum
		# (a plain go get of the module leaves go.sum short).
		go get -tool "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$VERSION" >&2
		CGO_ENABLED=0 go build -o "$bin.tmp" github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs
		mv "$bin.tmp" "$bin"
	)
fi
ln -sfn "victoria-logs-$VERSION" "$CACHE/bin/victoria-logs"
echo "$bin"
