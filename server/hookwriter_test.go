package server

import (
	"bytes"
	"net"
	"os"
	"testing"
	"time"

	"ferry/plugins"
)

// slowConn takes at most step bytes a Write and says the deadline
// passed when it did not take them all, as a socket whose peer reads
// slowly does; after stall bytes it takes none.
type slowConn struct {
	net.Conn
	step, stall int
	got         []byte
	renewals    int
	onRenew     func()
}

func (c *slowConn) Write(p []byte) (int, error) {
	k := min(len(p), c.step, c.stall-len(c.got))
	c.got = append(c.got, p[:k]...)
	if k < len(p) {
		return k, os.ErrDeadlineExceeded
	}
	return k, nil
}

func (c *slowConn) SetWriteDeadline(time.Time) error {
	c.renewals++
	if c.onRenew != nil {
		c.onRenew()
	}
	return nil
}

// A write the deadline cuts after some bytes went goes on with a renewed
// deadline, as long as each round moves bytes: a slow reader is not an
// idle one. One that takes nothing, or an upload stopped meanwhile, ends
// it with the timeout.
func TestHookWriterSlowPeer(t *testing.T) {
	a, b := bytes.Repeat([]byte("a"), 10000), bytes.Repeat([]byte("b"), 3000)
	tests := []struct {
		name     string
		dir      plugins.Direction
		b        []byte // writeVec's second piece
		stall    int
		stop     bool // stopUpstream after the first renewal
		wantErr  bool
		wantSent int
	}{
		{name: "slow reader", dir: plugins.Down, stall: 1 << 30, wantSent: 10000},
		{name: "slow reader, pair", dir: plugins.Down, b: b, stall: 1 << 30, wantSent: 13000},
		{name: "slow origin", dir: plugins.Up, stall: 1 << 30, wantSent: 10000},
		{name: "reader stops", dir: plugins.Down, stall: 4500, wantErr: true, wantSent: 4500},
		{name: "upload stopped", dir: plugins.Up, stall: 1 << 30, stop: true, wantErr: true, wantSent: 2000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &slowConn{step: 1000, stall: tt.stall}
			link := &httpLink{client: c, upConn: c}
			if tt.stop {
				c.onRenew = func() {
					if c.renewals == 2 { // the first was send's own
						link.upStopped.Store(true)
					}
				}
			}
			w := hookWriter{link: link, dir: tt.dir, idle: time.Second}
			err := w.send(a, tt.b)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want one: %v", err, tt.wantErr)
			}
			counted := link.down.Load() + link.up.Load()
			if len(c.got) != tt.wantSent || counted != int64(tt.wantSent) {
				t.Fatalf("sent %d, counted %d, want %d", len(c.got), counted, tt.wantSent)
			}
			if want := append(append([]byte{}, a...), tt.b...)[:tt.wantSent]; !bytes.Equal(c.got, want) {
				t.Fatal("the bytes sent differ from the ones given")
			}
		})
	}
}
