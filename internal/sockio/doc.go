// Package sockio reads and writes sockets without waking Go's runtime
// monitor (sysmon): on Linux a connection's non-blocking socket calls are
// made as raw system calls (syscall.RawSyscall), which never wait and so
// need none of what entering a system call does for one that may. The
// waits themselves (for bytes, for room, deadlines, a Close) stay the
// network poller's, through the connection's syscall.RawConn, so a Conn
// behaves as the *net.TCPConn it wraps: results, errors and deadlines
// alike (TestSockIOAsNetConn holds them to it case by case).
//
// The gateway reads and writes its client and upstream connections with
// Read and Write; the collector serves HTTP on Listener's connections.
// Race builds and systems other than Linux make the same calls through
// the syscall package; elsewhere than the BSDs, Darwin and Linux the
// functions are the connection's own Read and Write.
package sockio
