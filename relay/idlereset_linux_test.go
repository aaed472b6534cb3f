package relay

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"ferry/plugins"
	"ferry/test/testkit"
)

// TestIdleStalledSideReset: a channel that goes idle because its client
// stopped reading resets the client, whose bytes would otherwise sit in
// the kernel behind a shut window; one idle with nothing queued closes
// it in order, so the client reads to a clean EOF. Both on the spliced
// path and the hooked one.
func TestIdleStalledSideReset(t *testing.T) {
	for _, hooked := range []bool{false, true} {
		for _, stalled := range []bool{false, true} {
			t.Run(fmt.Sprintf("hooked=%v/stalled=%v", hooked, stalled), func(t *testing.T) {
				var ps []plugins.Plugin
				if hooked {
					ps = append(ps, upper{})
				}
				client, target, ch := setup(t, ps...)
				ch.IdleTimeout = 300 * time.Millisecond
				done := runAsync(ch, context.Background())
				if stalled {
					// More than the sockets between target and client hold:
					// the copy blocks writing to the client, which reads
					// nothing. The write fails once the channel ends.
					go io.CopyN(target, testkit.Zeros{}, 64<<20)
				}
				res := <-done
				if res.Reason != plugins.ReasonIdleTimeout {
					t.Fatalf("reason: got %v, want idle timeout", res.Reason)
				}
				if stalled {
					testkit.WaitReset(t, client.(*net.TCPConn), 5*time.Second)
					return
				}
				if _, err := io.ReadAll(client); err != nil {
					t.Fatalf("idle client with nothing queued: %v, want a clean EOF", err)
				}
			})
		}
	}
}
