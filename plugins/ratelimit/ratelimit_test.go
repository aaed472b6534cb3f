package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"ferry/config"
	"ferry/plugins"
)

// load builds an instance from the plugin table's own keys, as ferry
// does, with log as its logger.
func load(t *testing.T, opts string, log zerolog.Logger) (plugins.Plugin, error) {
	t.Helper()
	src := "[[listener]]\nlisten = \"127.0.0.1:0\"\nplugins = [\"p\"]\n\n[[plugin]]\nname = \"p\"\ntype = \"ratelimit\"\n" + opts
	cfg, err := config.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	pc := &cfg.Plugins[0]
	p, err := New(plugins.NewEnv(pc.Name, log, plugins.NewServices(), pc.Decode))
	return p, pc.WrapError(err)
}

// mustLoad is load for valid tables; the instance runs on clock c.
func mustLoad(t *testing.T, opts string, c *fakeClock, log zerolog.Logger) *Plugin {
	t.Helper()
	pl, err := load(t, opts, log)
	if err != nil {
		t.Fatalf("load %q: %v", opts, err)
	}
	p := pl.(*Plugin)
	if c != nil {
		p.now, p.sleep = c.Now, c.Sleep
	}
	return p
}

// fakeClock is a clock whose Sleep moves Now on at once. With cancel set,
// it calls cancel once cancelAt of sleeping has passed, in the middle of
// the sleep that crosses it, as a channel ending during a wait would.
type fakeClock struct {
	mu       sync.Mutex
	t        time.Time
	slept    time.Duration
	steps    int
	cancelAt time.Duration
	cancel   context.CancelFunc
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	c.steps++
	if c.cancel != nil && c.slept+d >= c.cancelAt {
		d = c.cancelAt - c.slept
		c.t = c.t.Add(d)
		c.slept += d
		c.cancel()
		return ctx.Err()
	}
	c.t = c.t.Add(d)
	c.slept += d
	return nil
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func session(id, client, user string) *plugins.Session {
	return &plugins.Session{ID: id, Listener: "test", Client: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client)),
		User: user, Target: "example.test:443", Protocol: "connect"}
}

// link is a plugins.Link that counts the writes a hook makes through it
// (the zero-byte touches that mark a throttled channel active) and fails
// once closed, like a relay's closed connection.
type link struct {
	closed  atomic.Bool
	touches atomic.Int64
}

func (l *link) send(p []byte) error {
	l.touches.Add(1)
	if l.closed.Load() {
		return net.ErrClosed
	}
	return nil
}
func (l *link) SendUpstream(p []byte) error { return l.send(p) }
func (l *link) SendClient(p []byte) error   { return l.send(p) }

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		opts string
		// wantErr is a substring of the error; empty: valid.
		wantErr                string
		wantReader, wantWriter bool
		wantMaxChunk           int // plugins.ChunkLimiter
	}{
		{name: "channel down", opts: `channel = { down = "1MiB" }`, wantWriter: true, wantMaxChunk: 128 << 10},
		{name: "channel both with burst", opts: `channel = { up = "1MiB", down = "1MiB", burst = "256KiB" }`, wantReader: true, wantWriter: true, wantMaxChunk: 128 << 10},
		{name: "client up", opts: `client = { up = "10MiB" }`, wantReader: true, wantMaxChunk: 1280 << 10},
		{name: "slowest scope", opts: "client = { up = \"10MiB\" }\nuser = { down = \"80KiB\" }", wantReader: true, wantWriter: true, wantMaxChunk: 10 << 10},
		{name: "user down", opts: `user = { down = 5000000 }`, wantWriter: true, wantMaxChunk: 625000},
		{name: "new connections only", opts: `new_connections = { per_client = 10, burst = 20 }`},
		{name: "new connections per minute", opts: `new_connections = { per_client = 60, interval = "1m" }`},
		{name: "sub-table", opts: "[plugin.channel]\ndown = \"1KiB\"\n", wantWriter: true, wantMaxChunk: 128},
		{name: "zero rates", opts: `channel = { up = "0B", down = 0 }`, wantErr: "no limit set"},
		{name: "nothing", opts: "", wantErr: "no limit set"},
		{name: "burst without rate", opts: `channel = { burst = "1KiB" }`, wantErr: "plugin[0].channel.burst: has no effect without"},
		{name: "zero burst", opts: `client = { down = "1MiB", burst = 0 }`, wantErr: "plugin[0].client.burst: must be positive"},
		{name: "negative rate", opts: `user = { down = -5 }`, wantErr: "user.down: invalid size -5: must not be negative"},
		{name: "bad size", opts: `channel = { down = "1 MiB/s" }`, wantErr: "channel.down: invalid size"},
		{name: "unknown key", opts: `channel = { dwn = "1MiB" }`, wantErr: "plugin[0].channel.dwn: unknown key"},
		{name: "unknown scope", opts: `target = { down = "1MiB" }`, wantErr: "plugin[0].target: unknown key"},
		{name: "negative per_client", opts: `new_connections = { per_client = -1 }`, wantErr: "new_connections.per_client: must not be negative"},
		{name: "zero connection burst", opts: `new_connections = { per_client = 1, burst = 0 }`, wantErr: "new_connections.burst: must be positive"},
		{name: "zero interval", opts: `new_connections = { per_client = 1, interval = "0s" }`, wantErr: "new_connections.interval: must be positive"},
		{name: "interval without rate", opts: `new_connections = { interval = "1s" }`, wantErr: "new_connections.interval: has no effect"},
		{name: "bare interval", opts: `new_connections = { per_client = 1, interval = 5 }`, wantErr: "must be a string with a unit"},
		{name: "user from auth alone", opts: `user_from_auth = true`, wantReader: true, wantWriter: true, wantMaxChunk: 128 << 10},
		{name: "user from auth with a burst", opts: "user_from_auth = true\nuser = { burst = \"64KiB\" }", wantReader: true, wantWriter: true, wantMaxChunk: 128 << 10},
		{name: "user burst without rate", opts: `user = { burst = "64KiB" }`, wantErr: "plugin[0].user.burst: has no effect without"},
		{name: "user from auth off", opts: `user_from_auth = false`, wantErr: "no limit set"},
		{name: "user from auth not a bool", opts: `user_from_auth = "yes"`, wantErr: "user_from_auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := load(t, tt.opts, zerolog.Nop())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			ds := plugins.DataDirectionsOf(p)
			isReader, isWriter := ds.Has(plugins.Up), ds.Has(plugins.Down)
			if isReader != tt.wantReader || isWriter != tt.wantWriter {
				t.Errorf("got reader %v, writer %v, want %v, %v", isReader, isWriter, tt.wantReader, tt.wantWriter)
			}
			if p.Name() != "p" {
				t.Errorf("got name %q, want p", p.Name())
			}
			if n := p.(plugins.ChunkLimiter).MaxChunk(); n != tt.wantMaxChunk {
				t.Errorf("MaxChunk %d, want %d", n, tt.wantMaxChunk)
			}
		})
	}
}

// TestWait checks how long each chunk waits on a fake clock: limiters
// start full, pieces never exceed the smallest burst, and the slowest
// limiter sets the pace. Each sleep is one piece's, followed by one touch
// and no other write.
func TestWait(t *testing.T) {
	type lim struct {
		rate  float64
		burst int
	}
	tests := []struct {
		name   string
		lims   []lim
		chunks []int
		want   time.Duration // total sleep
	}{
		{name: "within the burst", lims: []lim{{1000, 1000}}, chunks: []int{1000}, want: 0},
		{name: "three bursts in one chunk", lims: []lim{{1000, 1000}}, chunks: []int{3000}, want: 2 * time.Second},
		{name: "small burst, pieces", lims: []lim{{1000, 100}}, chunks: []int{1000}, want: 900 * time.Millisecond},
		{name: "many chunks", lims: []lim{{1 << 20, 64 << 10}}, chunks: []int{32 << 10, 32 << 10, 32 << 10, 32 << 10, 32 << 10}, want: 93750 * time.Microsecond},
		{name: "slowest of two", lims: []lim{{1000, 1000}, {500, 200}}, chunks: []int{1000}, want: 1600 * time.Millisecond},
		{name: "no limiters", lims: nil, chunks: []int{1 << 20}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			p := &Plugin{now: c.Now, sleep: c.Sleep}
			var ls []*rate.Limiter
			for _, l := range tt.lims {
				ls = append(ls, rate.NewLimiter(rate.Limit(l.rate), l.burst))
			}
			f := newFlow(ls)
			lk := &link{}
			for _, n := range tt.chunks {
				if err := p.wait(context.Background(), &f, n, lk.SendClient); err != nil {
					t.Fatalf("wait(%d): got error %v, want none", n, err)
				}
			}
			if d := c.slept - tt.want; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("slept %v, want %v", c.slept, tt.want)
			}
			if got, want := lk.touches.Load(), int64(c.steps); got != want {
				t.Errorf("got %d touches, want one per sleep (%d)", got, want)
			}
		})
	}
}

// TestWaitEndsWithChannel: a wait stops when its context ends, before or
// during a sleep, or when the touch after a piece finds the connection
// closed; it returns ErrClose and gives its reserved bytes back. A context
// that never ends and a session without a link let it finish.
func TestWaitEndsWithChannel(t *testing.T) {
	tests := []struct {
		name string
		// cancelAt is when, in sleeping time, the channel ends; negative:
		// before the wait starts; zero: never.
		cancelAt time.Duration
		// touchErr is what writes through the link return.
		touchErr  error
		wantErr   error
		wantSlept time.Duration
	}{
		// The burst's 100 bytes go at once; each later piece waits 1s.
		{name: "ended before", cancelAt: -1, wantErr: plugins.ErrClose, wantSlept: 0},
		{name: "ended during a sleep", cancelAt: 1500 * time.Millisecond, wantErr: plugins.ErrClose, wantSlept: 1500 * time.Millisecond},
		{name: "connection gone", touchErr: net.ErrClosed, wantErr: plugins.ErrClose, wantSlept: time.Second},
		{name: "not connected", touchErr: plugins.ErrNotConnected, wantSlept: 9 * time.Second},
		{name: "never ended", wantSlept: 9 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			p := &Plugin{now: c.Now, sleep: c.Sleep}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			switch {
			case tt.cancelAt < 0:
				cancel()
			case tt.cancelAt > 0:
				c.cancelAt, c.cancel = tt.cancelAt, cancel
			}
			l := rate.NewLimiter(100, 100)
			f := newFlow([]*rate.Limiter{l})
			err := p.wait(ctx, &f, 1000, func([]byte) error { return tt.touchErr })
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if c.slept != tt.wantSlept {
				t.Errorf("slept %v, want %v", c.slept, tt.wantSlept)
			}
			if tt.wantErr != nil {
				// The piece being waited for is given back: the limiter
				// holds what refilled meanwhile, not a debt.
				if got := l.TokensAt(c.Now()); got < 0 {
					t.Errorf("tokens after abort: got %.1f, want the reservation given back (>= 0)", got)
				}
			}
		})
	}
}

// TestHookReturnsWhenChannelCloses runs a wait of about ten seconds on the
// real clock and ends the session's context, as the relay does when the
// channel closes: the hook must return at once, having written nothing
// meanwhile (no probing).
func TestHookReturnsWhenChannelCloses(t *testing.T) {
	pl, err := load(t, `channel = { down = "1KiB" }`, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	w := pl.(plugins.Writer)
	s := session("1", "192.0.2.1:1000", "")
	if err := pl.(plugins.Connector).OnConnect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.BindContext(ctx)
	lk := &link{}
	s.Attach(lk)
	chunk := bytes.Repeat([]byte("x"), 11<<10) // 1 KiB at once, then 10 s
	done := make(chan error, 1)
	go func() {
		_, err := w.OnWrite(s, chunk)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	closed := time.Now()
	cancel() // the link stays open: the context alone ends the wait
	select {
	case err := <-done:
		d := time.Since(closed)
		t.Logf("hook returned %v after the channel closed", d)
		if !errors.Is(err, plugins.ErrClose) {
			t.Errorf("got error %v, want ErrClose", err)
		}
		// Generous scheduling slack on a loaded machine: a wake-up, not a
		// period of polling.
		if d > time.Second {
			t.Errorf("hook returned %v after the channel closed, want at once", d)
		}
		if n := lk.touches.Load(); n != 0 {
			t.Errorf("got %d writes through the link during one piece's wait, want none", n)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("hook still blocked 8s after the channel closed")
	}
	pl.(plugins.Closer).OnClose(s, plugins.Stats{})
}

// TestDataUnchanged: the hooks pass the chunk through as it is.
func TestDataUnchanged(t *testing.T) {
	c := newClock()
	p := mustLoad(t, `channel = { up = "1KiB", down = "1KiB" }`+"\n"+`client = { up = "2KiB" }`, c, zerolog.Nop())
	s := session("1", "192.0.2.1:1000", "")
	if err := p.OnConnect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	in := bytes.Repeat([]byte("0123456789"), 1000)
	rw := p
	for _, tt := range []struct {
		name string
		hook func(*plugins.Session, []byte) ([]byte, error)
	}{{"up", rw.OnRead}, {"down", rw.OnWrite}} {
		out, err := tt.hook(s, in)
		if err != nil || !bytes.Equal(out, in) {
			t.Errorf("%s: got %d bytes, error %v, want the %d bytes unchanged", tt.name, len(out), err, len(in))
		}
	}
	// 10000 bytes each way; up at 1 KiB/s (the client's 2 KiB/s is
	// looser) after a 1 KiB burst, down the same.
	want := 2 * time.Duration(float64(10000-1024)/1024*float64(time.Second))
	if d := c.slept - want; d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("slept %v, want %v", c.slept, want)
	}
	p.OnClose(s, plugins.Stats{})
}

// TestSharedScopes: channels of one client (and of one user) share one
// limiter; the tables forget buckets once unused and refilled.
func TestSharedScopes(t *testing.T) {
	c := newClock()
	p := mustLoad(t, `client = { down = "100B", burst = "1000B" }`+"\n"+`user = { down = "500B", burst = "500B" }`, c, zerolog.Nop())
	a1 := session("1", "192.0.2.1:1000", "alice")
	a2 := session("2", "192.0.2.1:1001", "alice")
	b := session("3", "[2001:db8::1%eth0]:1000", "")
	for _, s := range []*plugins.Session{a1, a2, b} {
		if err := p.OnConnect(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.clients.len(); got != 2 {
		t.Errorf("client buckets: got %d, want 2", got)
	}
	if got := p.users.len(); got != 1 {
		t.Errorf("user buckets: got %d, want 1 (sessions without a user are not counted)", got)
	}
	// The user's 500 B burst goes to a1; a2 then waits a second for the
	// user's rate, the client's burst covering both.
	for _, s := range []*plugins.Session{a1, a2} {
		if _, err := p.OnWrite(s, make([]byte, 500)); err != nil {
			t.Fatal(err)
		}
	}
	if want := time.Second; c.slept != want {
		t.Errorf("two channels of one user: slept %v, want %v", c.slept, want)
	}
	p.OnClose(a1, plugins.Stats{})
	if got := p.users.len(); got != 1 {
		t.Errorf("user buckets with a2 open: got %d, want 1", got)
	}
	p.OnClose(a2, plugins.Stats{})
	p.OnClose(b, plugins.Stats{})
	// b sent nothing: its bucket was full and went at once. The others
	// are kept until they have refilled and a sweep runs.
	if got := p.clients.len(); got != 1 {
		t.Errorf("client buckets after close: got %d, want 1 (a's, not yet refilled)", got)
	}
	c.Advance(sweepEvery + 2*time.Second)
	other := session("4", "198.51.100.1:1000", "bob")
	if err := p.OnConnect(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	p.OnClose(other, plugins.Stats{})
	if got := p.clients.len(); got != 0 {
		t.Errorf("client buckets after the sweep: got %d, want 0", got)
	}
	if got := p.users.len(); got != 0 {
		t.Errorf("user buckets after the sweep: got %d, want 0", got)
	}
}

// TestOnCloseWithoutConnect: OnClose also runs for channels an earlier
// plugin rejected, which this instance never set up.
func TestOnCloseWithoutConnect(t *testing.T) {
	p := mustLoad(t, `client = { down = "1000B" }`, newClock(), zerolog.Nop())
	held := session("1", "192.0.2.1:1000", "")
	if err := p.OnConnect(context.Background(), held); err != nil {
		t.Fatal(err)
	}
	p.OnClose(session("2", "192.0.2.1:1001", ""), plugins.Stats{Reason: plugins.ReasonRejected})
	p.OnWrite(held, make([]byte, 1000)) // empty the bucket so that it stays
	if got := p.clients.len(); got != 1 {
		t.Fatalf("client buckets: got %d, want 1", got)
	}
	p.OnClose(held, plugins.Stats{})
	p.OnClose(held, plugins.Stats{}) // twice: the second is ignored
	b := p.clients.m["192.0.2.1"]
	if b == nil || b.users != 0 {
		t.Fatalf("bucket after close: got %+v, want one with no users", b)
	}
}

func TestNewConnections(t *testing.T) {
	c := newClock()
	var logBuf bytes.Buffer
	p := mustLoad(t, `new_connections = { per_client = 2, burst = 3 }`, c, zerolog.New(&logBuf))
	steps := []struct {
		advance time.Duration
		client  string
		wantErr bool
	}{
		{0, "192.0.2.1:1", false},
		{0, "192.0.2.1:2", false},
		{0, "192.0.2.1:3", false},
		{0, "192.0.2.1:4", true}, // burst of 3 used
		{0, "192.0.2.1:5", true},
		{0, "[::ffff:192.0.2.1]:6", true}, // the same address, mapped
		{0, "192.0.2.2:1", false},         // another client
		{500 * time.Millisecond, "192.0.2.1:7", false},
		{0, "192.0.2.1:8", true},
		{warnEvery, "192.0.2.1:9", false},
		{0, "192.0.2.1:10", false},
		{0, "192.0.2.1:11", false},
		{0, "192.0.2.1:12", true},
	}
	for i, st := range steps {
		c.Advance(st.advance)
		s := session("s", st.client, "")
		err := p.OnConnect(context.Background(), s)
		if (err != nil) != st.wantErr {
			t.Fatalf("step %d (%s): got error %v, want error %v", i, st.client, err, st.wantErr)
		}
		if err != nil && plugins.CodeOf(err) != plugins.CodeForbidden {
			t.Errorf("step %d: got code %v, want forbidden", i, plugins.CodeOf(err))
		}
		p.OnClose(s, plugins.Stats{})
	}
	// Five refusals: one line at once, one warnEvery later counting the
	// three held back.
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d warning lines, want 2:\n%s", len(lines), logBuf.String())
	}
	for i, want := range []string{`"suppressed":0`, `"suppressed":3`} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], `"client":"192.0.2.1"`) {
			t.Errorf("line %d: got %s, want client 192.0.2.1 and %s", i, lines[i], want)
		}
	}
	c.Advance(sweepEvery + 2*time.Second)
	p.OnConnect(context.Background(), session("s", "203.0.113.1:1", ""))
	if got := p.conns.len(); got != 1 {
		t.Errorf("connection buckets after the sweep: got %d, want 1 (the new client's)", got)
	}
}

// TestTwoInstances: each instance keeps its own state in the session.
func TestTwoInstances(t *testing.T) {
	c := newClock()
	a := mustLoad(t, `client = { down = "1000B" }`, c, zerolog.Nop())
	b := mustLoad(t, `client = { down = "1000B" }`, c, zerolog.Nop())
	s := session("1", "192.0.2.1:1000", "")
	for _, p := range []*Plugin{a, b} {
		if err := p.OnConnect(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		p.OnWrite(s, make([]byte, 1000))
	}
	if c.slept != 0 {
		t.Errorf("slept %v, want 0: each instance has its own full bucket", c.slept)
	}
	a.OnClose(s, plugins.Stats{})
	if a.clients.m["192.0.2.1"].users != 0 || b.clients.m["192.0.2.1"].users != 1 {
		t.Errorf("after closing a: got users %d and %d, want 0 and 1",
			a.clients.m["192.0.2.1"].users, b.clients.m["192.0.2.1"].users)
	}
	b.OnClose(s, plugins.Stats{})
}

// TestConcurrent opens, uses and closes channels from many goroutines on
// shared buckets; run with -race. Afterwards nothing is held.
func TestConcurrent(t *testing.T) {
	pl, err := load(t, `channel = { up = "1GiB", down = "1GiB" }`+"\n"+
		`client = { up = "1GiB", down = "1GiB" }`+"\n"+`user = { down = "1GiB" }`+"\n"+
		`new_connections = { per_client = 1000000 }`, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	rw := pl.(*Plugin)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 50 {
				s := session("s", "192.0.2."+string(rune('1'+i%3))+":1000", []string{"", "alice", "bob"}[j%3])
				if err := rw.OnConnect(context.Background(), s); err != nil {
					t.Error(err)
					return
				}
				var inner sync.WaitGroup
				inner.Go(func() { rw.OnRead(s, make([]byte, 4096)) })
				rw.OnWrite(s, make([]byte, 4096))
				inner.Wait()
				rw.OnClose(s, plugins.Stats{})
			}
		})
	}
	wg.Wait()
	later := time.Now().Add(time.Hour)
	for name, tb := range map[string]*table{"clients": rw.clients, "users": rw.users} {
		tb.mu.Lock()
		for k, b := range tb.m {
			if b.users != 0 {
				t.Errorf("%s[%s]: got %d users after all closed, want 0", name, k, b.users)
			}
		}
		tb.sweepLocked(later)
		n := len(tb.m)
		tb.mu.Unlock()
		if n != 0 {
			t.Errorf("%s: got %d buckets after a sweep an hour later, want 0", name, n)
		}
	}
}

func TestClientAddr(t *testing.T) {
	var nilTCP *net.TCPAddr
	tests := []struct {
		name   string
		addr   net.Addr
		want   string
		wantOK bool
	}{
		{"ipv4", &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}, "192.0.2.1", true},
		{"ipv4 4-byte", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 1}, "192.0.2.1", true},
		{"mapped", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[::ffff:192.0.2.1]:1")), "192.0.2.1", true},
		{"ipv6 zone", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 1}, "fe80::1", true},
		{"udp", &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, "2001:db8::1", true},
		{"unix", &net.UnixAddr{Name: "/run/x", Net: "unix"}, "", false},
		{"nil", nil, "", false},
		{"typed nil", nilTCP, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := clientAddr(tt.addr)
			if ok != tt.wantOK || (ok && got.String() != tt.want) {
				t.Errorf("got %v, %v, want %s, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestUserFromAuth: with user_from_auth, a user's channels share a bucket
// at the rate the user's authentication gave (Session.UserRate), with
// user.burst or one second's worth as burst; users without one keep the
// configured user rate; a rate of 0 both ways is unlimited. Without
// user_from_auth the session's rate is ignored.
func TestUserFromAuth(t *testing.T) {
	tests := []struct {
		name     string
		opts     string
		rate     *plugins.Rate
		wantUp   float64 // the user bucket's rates; 0: no limiter
		wantDown float64
		burst    int // of the down limiter
		auth     bool
	}{
		{name: "rate from auth", opts: "user_from_auth = true", rate: &plugins.Rate{Up: 1000, Down: 4000},
			wantUp: 1000, wantDown: 4000, burst: 4000, auth: true},
		{name: "one way", opts: "user_from_auth = true", rate: &plugins.Rate{Down: 4000}, wantDown: 4000, burst: 4000, auth: true},
		{name: "user burst", opts: "user_from_auth = true\nuser = { burst = 512 }", rate: &plugins.Rate{Down: 4000},
			wantDown: 4000, burst: 512, auth: true},
		{name: "instead of the configured rate", opts: "user_from_auth = true\nuser = { down = 100 }", rate: &plugins.Rate{Down: 4000},
			wantDown: 4000, burst: 4000, auth: true},
		{name: "none given: the configured rate", opts: "user_from_auth = true\nuser = { down = 100 }", wantDown: 100, burst: 100},
		{name: "none given, none configured", opts: "user_from_auth = true"},
		{name: "unlimited", opts: "user_from_auth = true\nuser = { down = 100 }", rate: &plugins.Rate{}},
		{name: "huge", opts: "user_from_auth = true", rate: &plugins.Rate{Down: 1 << 40}, wantDown: 1 << 40, burst: math.MaxInt32, auth: true},
		{name: "off", opts: "user = { down = 100 }", rate: &plugins.Rate{Down: 4000}, wantDown: 100, burst: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			p := mustLoad(t, tt.opts, c, zerolog.Nop())
			s := session("1", "192.0.2.1:1000", "alice")
			s.UserRate = tt.rate
			if err := p.OnConnect(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			st := s.Value(sessionKey{p}).(*channelState)
			var up, down float64
			burst := 0
			if b := st.user; b != nil {
				if b.up != nil {
					up = float64(b.up.Limit())
				}
				if b.down != nil {
					down, burst = float64(b.down.Limit()), b.down.Burst()
				}
			}
			if up != tt.wantUp || down != tt.wantDown || burst != tt.burst {
				t.Errorf("user bucket up %v down %v burst %d, want %v %v %d", up, down, burst, tt.wantUp, tt.wantDown, tt.burst)
			}
			if got := st.user != nil && st.userTable == p.authUsers; got != tt.auth {
				t.Errorf("bucket from the auth table: %v, want %v", got, tt.auth)
			}
			p.OnClose(s, plugins.Stats{})
			if p.authUsers != nil && p.authUsers.len() != 0 {
				t.Errorf("auth buckets after close: %d, want 0 (full, unused)", p.authUsers.len())
			}
		})
	}
}

// TestUserFromAuthShared: two channels of a user at one rate share a
// bucket, another user or another rate gets its own.
func TestUserFromAuthShared(t *testing.T) {
	c := newClock()
	p := mustLoad(t, "user_from_auth = true", c, zerolog.Nop())
	r1, r2 := &plugins.Rate{Down: 1000}, &plugins.Rate{Down: 2000}
	open := func(id, user string, r *plugins.Rate) *channelState {
		s := session(id, "192.0.2.1:1000", user)
		s.UserRate = r
		if err := p.OnConnect(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		return s.Value(sessionKey{p}).(*channelState)
	}
	a1, a2, b, a3 := open("1", "alice", r1), open("2", "alice", r1), open("3", "bob", r1), open("4", "alice", r2)
	if a1.user != a2.user || a1.user == b.user || a1.user == a3.user {
		t.Errorf("buckets: alice %p %p, bob %p, alice at another rate %p", a1.user, a2.user, b.user, a3.user)
	}
	if n := p.authUsers.len(); n != 3 {
		t.Errorf("auth buckets %d, want 3", n)
	}
}
