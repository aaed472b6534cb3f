package relay

import (
	"context"
	"net"
	"testing"
	"time"

	"ferry/test/testkit"
)

// TestUpstreamKeepAliveDeferred: a channel turns UpstreamKeepAlive on
// when a direction first parks, not before; one that cannot park turns
// it on at Start; one that ends busy never does.
func TestUpstreamKeepAliveDeferred(t *testing.T) {
	cfg := &net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second}
	tests := []struct {
		name      string
		park      bool // the Parker's 20 ms pass and the tunnel parks
		hooked    bool // a data hook: the channel cannot park
		wantAfter bool // keep-alive on after the exchange
	}{
		{name: "ends busy", wantAfter: false},
		{name: "goes idle", park: true, wantAfter: true},
		{name: "cannot park", hooked: true, wantAfter: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var client, target net.Conn
			var ch *Channel
			if tt.hooked {
				client, target, ch = setup(t, passthrough{})
			} else {
				client, target, ch = setup(t)
			}
			// As a lazy dial leaves it (net.Dial turns it on).
			if err := ch.Upstream.(*net.TCPConn).SetKeepAlive(false); err != nil {
				t.Fatal(err)
			}
			ch.UpstreamKeepAlive = cfg
			p := newTestParker(t)
			if !tt.park {
				p.After = time.Minute // not within the test
			}
			ch.Parker = p
			done := runAsync(ch, context.Background())
			exchange(t, client, target, "hello")
			if testkit.KeepAliveOn(t, ch.Upstream) && !tt.hooked {
				t.Fatal("keep-alive on while the tunnel is busy")
			}
			if tt.park {
				waitParked(t, p, 2)
			}
			if got := testkit.KeepAliveOn(t, ch.Upstream); got != tt.wantAfter {
				t.Errorf("keep-alive on %v, want %v", got, tt.wantAfter)
			}
			client.Close()
			target.Close()
			<-done
		})
	}
}
