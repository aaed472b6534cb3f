package testkit

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// WaitReset waits up to limit for c's TCP state to be closed
// (TCP_INFO's TCP_CLOSE), as a reset from its peer leaves it, and says
// how long that took. An orderly close of a peer with bytes still queued
// for c never gets there: the FIN waits behind them. It fails t when the
// state did not come.
func WaitReset(t testing.TB, c *net.TCPConn, limit time.Duration) time.Duration {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		var info *unix.TCPInfo
		var ierr error
		cerr := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
		if err := errors.Join(cerr, ierr); err != nil {
			t.Fatalf("TCP state after %v: %v", time.Since(start), err)
		}
		if info.State == unix.BPF_TCP_CLOSE {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("not reset after %v (TCP state %d)", limit, info.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
