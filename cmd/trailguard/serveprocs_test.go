package main

import "testing"

func TestServeProcs(t *testing.T) {
	for _, tc := range []struct {
		env     string
		def     int
		want    int
		wantSet bool
	}{
		{"", 2, 3, true},   // one P more than the CPUs Go would use
		{"", 1, 2, true},   // a single CPU too
		{"2", 2, 0, false}, // the operator's GOMAXPROCS stands
		{"8", 2, 0, false},
	} {
		if got, set := serveProcs(tc.env, tc.def); got != tc.want || set != tc.wantSet {
			t.Errorf("serveProcs(%q, %d) = %d, %v; want %d, %v", tc.env, tc.def, got, set, tc.want, tc.wantSet)
		}
	}
}
