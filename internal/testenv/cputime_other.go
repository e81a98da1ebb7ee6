//go:build !unix

package testenv

import "time"

// CPUTime is 0 where getrusage is missing: benchmarks then report no CPU
// figure rather than a wrong one.
func CPUTime() time.Duration { return 0 }
