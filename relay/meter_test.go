package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"

	"ferry/plugins"
)

// budgetMeter is a plugins.Meter that keeps what fits in a byte budget
// (left < 0: none) and records what it was told and what it kept.
type budgetMeter struct {
	dirs plugins.Directions
	err  error // returned with every chunk once set

	mu   sync.Mutex
	left int64
	kept [2]int64
}

func (m *budgetMeter) Name() string                       { return "meter" }
func (m *budgetMeter) DataDirections() plugins.Directions { return m.dirs }
func (m *budgetMeter) OnBytes(_ *plugins.Session, d plugins.Direction, n int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return 0, m.err
	}
	keep := int64(n)
	if m.left >= 0 {
		keep = min(keep, m.left)
		m.left -= keep
	}
	m.kept[d] += keep
	return int(keep), nil
}

// passThrough has data hooks that change nothing: a channel with it
// copies in user space.
type passThrough struct{}

func (passThrough) Name() string                                         { return "pass" }
func (passThrough) OnRead(_ *plugins.Session, p []byte) ([]byte, error)  { return p, nil }
func (passThrough) OnWrite(_ *plugins.Session, p []byte) ([]byte, error) { return p, nil }

// TestChannelMeter: a Meter is told every byte delivered, pending bytes
// included, on the splice path (which a Meter alone keeps) and through
// the data hooks alike; a cut delivers exactly what the Meter kept and
// ends the channel as a plugin close; a Meter's error is a plugin error.
func TestChannelMeter(t *testing.T) {
	const budget = 1<<20 + 123
	tests := []struct {
		name       string
		hooks      bool  // a pass-through data hook too
		left       int64 // the meter's budget, < 0: none
		err        error
		wantReason plugins.CloseReason
	}{
		{name: "spliced count", left: -1, wantReason: plugins.ReasonClientClosed},
		{name: "hooked count", hooks: true, left: -1, wantReason: plugins.ReasonClientClosed},
		{name: "spliced cut", left: budget, wantReason: plugins.ReasonPluginClosed},
		{name: "hooked cut", hooks: true, left: budget, wantReason: plugins.ReasonPluginClosed},
		{name: "error", left: -1, err: errors.New("broken"), wantReason: plugins.ReasonPluginError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &budgetMeter{dirs: plugins.BothData, left: tt.left, err: tt.err}
			ps := []plugins.Plugin{m}
			if tt.hooks {
				ps = append(ps, passthrough{})
			}
			client, target, ch := setup(t, ps...)
			upload := 0
			if tt.left < 0 {
				// Not with a cut: the channel would end with bytes
				// unread from the client, whose socket then resets
				// and may lose what it received before.
				upload = 2 << 20
				ch.ClientPending = []byte("pending")
			}
			done := runAsync(ch, context.Background())
			up, down := meterTraffic(t, client, target, upload)
			res := <-done
			if res.Reason != tt.wantReason {
				t.Fatalf("reason %v (%v), want %v", res.Reason, res.Err, tt.wantReason)
			}
			if runtime.GOOS == "linux" && ch.fast == tt.hooks {
				t.Errorf("fast path %v with data hooks %v", ch.fast, tt.hooks)
			}
			checkMetered(t, m, res, up, down, tt.left)
		})
	}
}

// meterTraffic sends upload bytes up and 3 MiB down, each followed by a
// FIN, and returns what the target and the client received until their
// EOFs.
func meterTraffic(t *testing.T, client, target net.Conn, upload int) (up, down int64) {
	t.Helper()
	send := func(c net.Conn, n int) {
		c.Write(bytes.Repeat([]byte{'x'}, n))
		c.(*net.TCPConn).CloseWrite()
	}
	go send(client, upload)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		up, _ = io.Copy(io.Discard, target)
		// The target answers once the client's end has reached it, so
		// the client is the first side to close, whatever the timing:
		// the reason the tests expect. Sent at once, the two ends raced.
		send(target, 3<<20)
	}()
	down, _ = io.Copy(io.Discard, client)
	wg.Wait()
	client.Close()
	target.Close()
	return up, down
}

// checkMetered compares what m kept with what was received and counted.
func checkMetered(t *testing.T, m *budgetMeter, res Result, up, down, left int64) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return
	}
	if m.kept[plugins.Up] != up || m.kept[plugins.Down] != down || res.Up != up || res.Down != down {
		t.Errorf("metered %v, counted %d/%d, received %d/%d: want all equal", m.kept, res.Up, res.Down, up, down)
	}
	if left < 0 && (up != 2<<20+7 || down != 3<<20) {
		t.Errorf("received %d up, %d down; want all of %d, %d", up, down, 2<<20+7, 3<<20)
	}
	if left >= 0 && up+down != left {
		t.Errorf("received %d bytes in all, want the budget %d", up+down, left)
	}
}
