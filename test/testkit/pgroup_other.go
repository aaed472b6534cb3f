//go:build !unix

package testkit

import "os/exec"

// ownGroup does nothing where there are no process groups.
func ownGroup(*exec.Cmd) {}

// killGroup kills cmd alone where there are no process groups.
func killGroup(cmd *exec.Cmd) {
	cmd.Process.Kill()
}
