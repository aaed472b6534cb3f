package connlimit

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
)

// load builds an instance from the plugin table's own keys, as ferry
// does.
func load(t *testing.T, opts string, log zerolog.Logger) (*Plugin, error) {
	t.Helper()
	src := "[[listener]]\nlisten = \"127.0.0.1:0\"\nplugins = [\"p\"]\n\n[[plugin]]\nname = \"p\"\ntype = \"connlimit\"\n" + opts
	cfg, err := config.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	pc := &cfg.Plugins[0]
	p, err := New(plugins.NewEnv(pc.Name, log, plugins.NewServices(), pc.Decode))
	if err != nil {
		return nil, pc.WrapError(err)
	}
	return p.(*Plugin), nil
}

func mustLoad(t *testing.T, opts string, log zerolog.Logger) *Plugin {
	t.Helper()
	p, err := load(t, opts, log)
	if err != nil {
		t.Fatalf("load %q: %v", opts, err)
	}
	return p
}

func session(client, user string) *plugins.Session {
	return &plugins.Session{ID: "s", Listener: "test", Target: "example.test:443", Protocol: "connect",
		Client: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client)), User: user}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		opts    string
		wantErr string // substring; empty: valid
	}{
		{name: "per client", opts: "per_client = 2"},
		{name: "per user", opts: "per_user = 5"},
		{name: "both", opts: "per_client = 2\nper_user = 5"},
		{name: "nothing", opts: "", wantErr: "no limit set"},
		{name: "zeros", opts: "per_client = 0\nper_user = 0", wantErr: "no limit set"},
		{name: "negative client", opts: "per_client = -1", wantErr: "plugin[0].per_client: must not be negative"},
		{name: "negative user", opts: "per_client = 1\nper_user = -1", wantErr: "plugin[0].per_user: must not be negative"},
		{name: "string", opts: `per_client = "2"`, wantErr: "plugin[0].per_client: must be an integer"},
		{name: "misspelled", opts: "per_clients = 2", wantErr: "plugin[0].per_clients: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := load(t, tt.opts, zerolog.Nop())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if p.Name() != "p" {
					t.Errorf("got name %q, want p", p.Name())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestLimits runs a sequence of opens and closes against one instance and
// checks each answer and the counters after it.
func TestLimits(t *testing.T) {
	type step struct {
		close   int    // when > 0, close the session opened at this step (1-based) instead
		client  string // client address
		user    string
		wantErr string // substring of the refusal; empty: admitted
		// wantClient and wantUser are the counters of the step's client
		// address and user afterwards.
		wantClient, wantUser int
	}
	tests := []struct {
		name  string
		opts  string
		steps []step
	}{
		{
			name: "per client",
			opts: "per_client = 2",
			steps: []step{
				{client: "192.0.2.1:1", wantClient: 1},
				{client: "192.0.2.1:2", wantClient: 2},
				{client: "192.0.2.1:3", wantErr: "client 192.0.2.1 has 2 channels open", wantClient: 2},
				{client: "[::ffff:192.0.2.1]:4", wantErr: "client 192.0.2.1", wantClient: 2},
				{client: "192.0.2.2:1", wantClient: 1},
				{close: 1, client: "192.0.2.1:1", wantClient: 1},
				{client: "192.0.2.1:5", wantClient: 2},
				{close: 3, client: "192.0.2.1:3", wantClient: 2}, // refused: nothing to give back
				{close: 2, client: "192.0.2.1:2", wantClient: 1},
				{close: 7, client: "192.0.2.1:5", wantClient: 0},
				{close: 5, client: "192.0.2.2:1", wantClient: 0},
			},
		},
		{
			name: "per user",
			opts: "per_user = 1",
			steps: []step{
				{client: "192.0.2.1:1", user: "alice", wantUser: 1},
				{client: "192.0.2.2:1", user: "alice", wantErr: "user alice has 1 channels open", wantUser: 1},
				{client: "192.0.2.2:2", user: "bob", wantUser: 1},
				{client: "192.0.2.2:3"}, // no user: not counted
				{client: "192.0.2.2:4"},
				{close: 1, client: "192.0.2.1:1", user: "alice"},
				{client: "192.0.2.3:1", user: "alice", wantUser: 1},
			},
		},
		{
			name: "both, all or nothing",
			opts: "per_client = 2\nper_user = 1",
			steps: []step{
				{client: "192.0.2.1:1", user: "alice", wantClient: 1, wantUser: 1},
				// Refused for the user: the client's counter is not taken.
				{client: "192.0.2.1:2", user: "alice", wantErr: "user alice", wantClient: 1, wantUser: 1},
				{client: "192.0.2.1:3", user: "bob", wantClient: 2, wantUser: 1},
				// Refused for the client: bob's counter is not taken either.
				{client: "192.0.2.1:4", user: "carol", wantErr: "client 192.0.2.1", wantClient: 2},
				{close: 3, client: "192.0.2.1:3", user: "bob", wantClient: 1},
				{client: "192.0.2.1:5", user: "carol", wantClient: 2, wantUser: 1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustLoad(t, tt.opts, zerolog.Nop())
			opened := make([]*plugins.Session, len(tt.steps)+1)
			for i, st := range tt.steps {
				if st.close > 0 {
					p.OnClose(opened[st.close], plugins.Stats{})
				} else {
					s := session(st.client, st.user)
					opened[i+1] = s
					err := p.OnConnect(context.Background(), s)
					switch {
					case st.wantErr == "" && err != nil:
						t.Fatalf("step %d: got error %v, want none", i+1, err)
					case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
						t.Fatalf("step %d: got error %v, want one containing %q", i+1, err, st.wantErr)
					case err != nil && plugins.CodeOf(err) != plugins.CodeForbidden:
						t.Fatalf("step %d: got code %v, want forbidden", i+1, plugins.CodeOf(err))
					}
				}
				ip, _ := clientAddr(session(st.client, "").Client)
				gotClient, gotUser := p.open(ip, st.user)
				if st.user == "" {
					gotUser = 0
				}
				if gotClient != st.wantClient || gotUser != st.wantUser {
					t.Fatalf("step %d: got counters client %d, user %d, want %d, %d", i+1, gotClient, gotUser, st.wantClient, st.wantUser)
				}
			}
			for _, s := range opened {
				if s != nil {
					p.OnClose(s, plugins.Stats{})
				}
			}
			if len(p.counts.clients) != 0 || len(p.counts.users) != 0 {
				t.Errorf("after closing everything: got %v and %v, want empty maps", p.counts.clients, p.counts.users)
			}
		})
	}
}

// TestRejectedEarlier: OnClose runs for channels that an earlier plugin
// refused before this one counted them; they must not be given back.
func TestRejectedEarlier(t *testing.T) {
	p := mustLoad(t, "per_client = 1\nper_user = 1", zerolog.Nop())
	held := session("192.0.2.1:1", "alice")
	if err := p.OnConnect(context.Background(), held); err != nil {
		t.Fatal(err)
	}
	p.OnClose(session("192.0.2.1:2", "alice"), plugins.Stats{Reason: plugins.ReasonRejected})
	if c, u := p.open(netip.MustParseAddr("192.0.2.1"), "alice"); c != 1 || u != 1 {
		t.Fatalf("after closing a channel never counted: got %d, %d, want 1, 1", c, u)
	}
	// The user changes after OnConnect (a later plugin): the count given
	// back is the one taken.
	held.User = "mallory"
	p.OnClose(held, plugins.Stats{})
	p.OnClose(held, plugins.Stats{}) // a second OnClose is ignored
	if len(p.counts.clients) != 0 || len(p.counts.users) != 0 {
		t.Fatalf("got %v and %v, want empty maps", p.counts.clients, p.counts.users)
	}
}

// TestTwoInstances: two instances on one listener count apart, and one
// listed twice counts a channel once.
func TestTwoInstances(t *testing.T) {
	a := mustLoad(t, "per_client = 1", zerolog.Nop())
	b := mustLoad(t, "per_client = 5", zerolog.Nop())
	s := session("192.0.2.1:1", "")
	for _, p := range []*Plugin{a, b, b} {
		if err := p.OnConnect(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	ip := netip.MustParseAddr("192.0.2.1")
	if ca, _ := a.open(ip, ""); ca != 1 {
		t.Errorf("a: got %d, want 1", ca)
	}
	if cb, _ := b.open(ip, ""); cb != 1 {
		t.Errorf("b listed twice: got %d, want 1", cb)
	}
	for _, p := range []*Plugin{b, b, a} {
		p.OnClose(s, plugins.Stats{})
	}
	if len(a.counts.clients) != 0 || len(b.counts.clients) != 0 {
		t.Errorf("got %v and %v, want empty maps", a.counts.clients, b.counts.clients)
	}
}

// TestWarnThrottled: a flood of refusals logs one warning per warnEvery,
// the next one counting those held back.
func TestWarnThrottled(t *testing.T) {
	var buf bytes.Buffer
	p := mustLoad(t, "per_client = 1", zerolog.New(&buf))
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	if err := p.OnConnect(context.Background(), session("192.0.2.1:1", "")); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if i == 50 {
			now = now.Add(warnEvery)
		}
		if err := p.OnConnect(context.Background(), session("192.0.2.1:2", "alice")); err == nil {
			t.Fatal("got no error, want a refusal")
		}
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{`"suppressed":0`, `"suppressed":49`} {
		for _, w := range []string{want, `"level":"warn"`, `"client":"192.0.2.1"`, `"user":"alice"`, `"message":"connection limit reached"`} {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d: got %s, want %s in it", i, lines[i], w)
			}
		}
	}
}

// TestConcurrent opens and closes channels from many goroutines; run with
// -race. The limits hold at every moment and everything is given back.
func TestConcurrent(t *testing.T) {
	const limit = 3
	p := mustLoad(t, fmt.Sprintf("per_client = %d\nper_user = %d", limit, limit+1), zerolog.Nop())
	var mu sync.Mutex
	open := map[string]int{} // admitted and not yet closed, by client and by user
	check := func(key string, delta, limit int) {
		mu.Lock()
		defer mu.Unlock()
		open[key] += delta
		if open[key] > limit {
			t.Errorf("%d channels open for %s, limit %d", open[key], key, limit)
		}
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			ip := fmt.Sprintf("192.0.2.%d", i%4+1)
			user := []string{"alice", "bob"}[i%2]
			for range 200 {
				s := session(ip+":1000", user)
				if p.OnConnect(context.Background(), s) == nil {
					check(ip, 1, limit)
					check(user, 1, limit+1)
					runtime.Gosched()
					check(ip, -1, limit)
					check(user, -1, limit+1)
				}
				p.OnClose(s, plugins.Stats{})
			}
		})
	}
	wg.Wait()
	if len(p.counts.clients) != 0 || len(p.counts.users) != 0 {
		t.Errorf("got %v and %v, want empty maps", p.counts.clients, p.counts.users)
	}
}

// otherPlugin is a plugin of another type, for CarryFrom.
type otherPlugin struct{}

func (otherPlugin) Name() string { return "limits" }

// TestCarryFrom: a reload's new instance adopts the old one's counts,
// shared, whatever its limits: a client at its limit stays refused, a
// raised limit gives room at once and a lowered one refuses until enough
// old channels have ended; a channel of the old instance closing after
// the reload makes room in the new one. From another type, or from
// itself, it starts afresh.
func TestCarryFrom(t *testing.T) {
	tests := []struct {
		name    string
		newOpts string
		old     func(p *Plugin) plugins.Plugin // what CarryFrom gets
		carried bool
		// room is how many new channels the client may open after the
		// reload while its 2 old ones are open; roomAfter, once it has
		// closed those and one old channel has ended.
		room, roomAfter int
	}{
		{name: "same limits", newOpts: "per_client = 2", carried: true, room: 0, roomAfter: 1},
		{name: "same limits, other layout", newOpts: "per_client   =   2 # still two", carried: true, room: 0, roomAfter: 1},
		{name: "raised limit", newOpts: "per_client = 3", carried: true, room: 1, roomAfter: 2},
		{name: "lowered limit", newOpts: "per_client = 1", carried: true, room: 0, roomAfter: 0},
		{name: "per_user added", newOpts: "per_client = 2\nper_user = 5", carried: true, room: 0, roomAfter: 1},
		{name: "another type", newOpts: "per_client = 2", old: func(*Plugin) plugins.Plugin { return otherPlugin{} }, room: 2, roomAfter: 2},
		{name: "itself", newOpts: "per_client = 2", old: func(p *Plugin) plugins.Plugin { return p }, room: 2, roomAfter: 2},
	}
	ip := netip.MustParseAddr("192.0.2.1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := mustLoad(t, "per_client = 2", zerolog.Nop())
			held := []*plugins.Session{session("192.0.2.1:1", ""), session("192.0.2.1:2", "")}
			for _, s := range held {
				if err := old.OnConnect(context.Background(), s); err != nil {
					t.Fatal(err)
				}
			}
			p := mustLoad(t, tt.newOpts, zerolog.Nop())
			var from plugins.Plugin = old
			if tt.old != nil {
				from = tt.old(p)
			}
			p.CarryFrom(from)
			if shared := p.counts == old.counts; shared != tt.carried {
				t.Fatalf("counts shared: %v, want %v", shared, tt.carried)
			}
			if got := fill(t, p); got != tt.room {
				t.Fatalf("after CarryFrom: %d new channels admitted, want %d", got, tt.room)
			}
			// An old channel ends after the reload, through the old instance.
			old.OnClose(held[0], plugins.Stats{})
			if got := fill(t, p); got != tt.roomAfter {
				t.Fatalf("after an old channel closed: %d new channels admitted, want %d", got, tt.roomAfter)
			}
			old.OnClose(held[1], plugins.Stats{})
			if n, _ := p.open(ip, ""); n != 0 {
				t.Errorf("after closing everything: new instance counts %d, want 0", n)
			}
			if len(p.counts.clients) != 0 || len(old.counts.clients) != 0 {
				t.Errorf("after closing everything: got %v and %v, want empty maps", p.counts.clients, old.counts.clients)
			}
		})
	}
}

// fill opens channels of 192.0.2.1 on p until one is refused (at most
// 10), closes them again, and returns how many were admitted.
func fill(t *testing.T, p *Plugin) int {
	t.Helper()
	var open []*plugins.Session
	for i := range 10 {
		s := session(fmt.Sprintf("192.0.2.1:%d", 100+i), "")
		if p.OnConnect(context.Background(), s) != nil {
			p.OnClose(s, plugins.Stats{})
			break
		}
		open = append(open, s)
	}
	for _, s := range open {
		p.OnClose(s, plugins.Stats{})
	}
	return len(open)
}
