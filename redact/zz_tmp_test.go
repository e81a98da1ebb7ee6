package redact

import (
	"fmt"
	"testing"
)

func BenchmarkTmpFields(b *testing.B) {
	r, _ := New(Config{})
	tk := r.NewTokens()
	for _, v := range []string{"2026-11-25T12:00:37.000037Z", "0193a1b2-c3d4-7e5f-00000007000000000123", "01a229fa-2162-7447-9974-6531957ed1d0", "01a229fa-2162-7447-9974-653195711234", "req-00000123", "/api/orders/123"} {
		b.Run(fmt.Sprint(len(v)), func(b *testing.B) {
			bv := []byte(v)
			for b.Loop() {
				if !tk.UnchangedText(bv) {
					b.Fatal()
				}
			}
		})
	}
}
