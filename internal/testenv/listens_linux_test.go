package testenv

import (
	"os"
	"testing"
)

// TestProcListens: a port bound without listening is not listened on; the
// same port listened on is, by this process and no other.
func TestProcListens(t *testing.T) {
	t.Parallel()
	me, ok := LookProc(os.Getpid())
	if !ok {
		t.Fatal("no /proc entry for this process")
	}
	parent, _ := LookProc(os.Getppid())
	p := NewRefusedPort(t)
	if me.Listens(p.Addr()) {
		t.Fatalf("%s, bound but not listening, counts as listened on", p.Addr())
	}
	ln := p.Listen(t)
	defer ln.Close()
	if !me.Listens(p.Addr()) {
		t.Fatalf("this process listens on %s, Listens says no", p.Addr())
	}
	if parent.Listens(p.Addr()) {
		t.Fatalf("the parent process counts as listening on this process's %s", p.Addr())
	}
}
