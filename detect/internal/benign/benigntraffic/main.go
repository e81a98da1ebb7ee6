// Command benigntraffic writes a day of ordinary API traffic, with the
// mistakes users and systems make, as NDJSON audit events (see package
// benign). The detection false-positive check replays it:
//
//	go run ./detect/internal/benign/benigntraffic -events 1000000 > benign.ndjson
//	go run ./cmd/trailguard detect --replay benign.ndjson
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/trailguard/trailguard/detect/internal/benign"
)

func main() {
	var o benign.Options
	flag.IntVar(&o.Events, "events", 1_000_000, "write at least `N` events")
	flag.Uint64Var(&o.Seed, "seed", 1, "random seed (the same seed writes the same traffic)")
	flag.IntVar(&o.Users, "users", 20_000, "user population")
	flag.Float64Var(&o.TypoRate, "typo", 0.06, "chance a login attempt is mistyped")
	flag.Float64Var(&o.RetypoRate, "retypo", 0.2, "chance the attempt after a typo is mistyped too")
	flag.Parse()
	st, err := benign.Generate(os.Stdout, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benigntraffic:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "%d events until %s: %d logins (%d failed, %d unknown user names, %d users gave up), %d expired sessions, %d 404s, %d authorization failures\n",
		st.Events, st.End.Format("2006-01-02 15:04"), st.Logins, st.FailedLogins, st.UnknownUsers, st.GaveUp, st.Expired, st.NotFound, st.AuthzFail)
}
