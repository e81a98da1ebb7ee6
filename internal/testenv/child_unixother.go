//go:build unix && !linux

package testenv

import "syscall"

// setParentDeathSignal does nothing: only Linux has a parent-death signal;
// elsewhere the test's end kills the group, and a killed test binary's
// children are orphaned.
func setParentDeathSignal(*syscall.SysProcAttr) {}
