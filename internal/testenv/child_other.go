//go:build !unix

package testenv

import "os/exec"

func tieToParent(*exec.Cmd) {}

func killGroup(cmd *exec.Cmd) { cmd.Process.Kill() }

func closeInheritedOnExec() {}
