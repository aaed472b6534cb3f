package upstream

import (
	"context"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/test/testkit"
)

// TestDirectTargetLazyKeepAlive: a direct dial to the target turns
// keep-alive on (30 s idle) unless the DialInfo asks for LazyKeepAlive,
// which it then reports as deferred.
func TestDirectTargetLazyKeepAlive(t *testing.T) {
	target := testkit.EchoTarget(t).Addr
	for _, lazy := range []bool{false, true} {
		info := &DialInfo{LazyKeepAlive: lazy}
		c, err := DirectTarget().DialContext(WithDialInfo(context.Background(), info), "tcp", target)
		if err != nil {
			t.Fatal(err)
		}
		if on := testkit.KeepAliveOn(t, c); on == lazy {
			t.Errorf("lazy %v: keep-alive on %v", lazy, on)
		}
		if !lazy {
			if idle := testkit.SockoptInt(t, c, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE); idle != 30 {
				t.Errorf("keep-alive idle %d s, want 30", idle)
			}
		}
		if info.KeepAliveDeferred() != lazy {
			t.Errorf("lazy %v: KeepAliveDeferred %v", lazy, info.KeepAliveDeferred())
		}
		c.Close()
	}
}
