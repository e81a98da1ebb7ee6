package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// exitWatch reports, when called, whether the child pid has exited
// (a zombie not yet waited for included).
func exitWatch(pid int) func() bool {
	p, _ := LookProc(pid)
	return func() bool { return !p.Running() }
}

// listening says who listens on addr (127.0.0.1:port) as /proc shows it:
// pid, or with group a process of the group led by pid (StartChild gives
// every child a group of its own, which its children share), another
// process, or no one. A listener on the wildcard address holds the port
// too.
func listening(pid int, group bool, addr string) listenState {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return listenNone
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return listenNone
	}
	inodes := listenInodes(port)
	if len(inodes) == 0 {
		return listenNone
	}
	ours := map[string]bool{}
	if group {
		ours = groupSockets(pid)
	} else {
		addSockets(ours, pid)
	}
	for _, ino := range inodes {
		if ours[ino] {
			return listenOurs
		}
	}
	return listenForeign
}

// listenInodes are the inodes of the sockets listening on port of
// 127.0.0.1 or of any address, IPv4 or IPv6 (/proc/net/tcp and tcp6:
// local address as hex:port in hex, state 0A is LISTEN).
func listenInodes(port int) []string {
	blocking := map[string]bool{
		"0100007F": true, "00000000": true, // 127.0.0.1 and 0.0.0.0 (little-endian words)
		"00000000000000000000000000000000": true, "0000000000000000FFFF00000100007F": true, // :: and ::ffff:127.0.0.1
	}
	want := fmt.Sprintf(":%04X", port)
	var inodes []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" {
				continue
			}
			host, ok := strings.CutSuffix(f[1], want)
			if !ok || !blocking[host] {
				continue
			}
			inodes = append(inodes, f[9])
		}
	}
	return inodes
}

// groupSockets are the inodes of the sockets the processes of group pgid
// hold.
func groupSockets(pgid int) map[string]bool {
	socks := map[string]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !inGroup(pid, pgid) {
			continue
		}
		addSockets(socks, pid)
	}
	return socks
}

// addSockets adds the inodes of the sockets process pid holds to socks.
func addSockets(socks map[string]bool, pid int) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	fds, _ := os.ReadDir(dir)
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil {
			if ino, ok := strings.CutPrefix(l, "socket:["); ok {
				socks[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
}

// Listens reports whether p itself holds a socket listening on addr
// (127.0.0.1:port; a listener on any address of the port counts): that a
// program got the address it was given, rather than finding it taken by
// another process, which may answer its clients as well.
func (p Proc) Listens(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return false
	}
	inodes := listenInodes(n)
	if len(inodes) == 0 || !p.Running() {
		return false
	}
	socks := map[string]bool{}
	addSockets(socks, p.Pid)
	for _, ino := range inodes {
		if socks[ino] {
			return true
		}
	}
	return false
}

// inGroup reports whether process pid is in process group pgid (field 5
// of /proc/PID/stat, counted from the command name's last ')').
func inGroup(pid, pgid int) bool {
	if pid == pgid {
		return true
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	return len(f) > 2 && f[2] == strconv.Itoa(pgid)
}
