package quota

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"ferry/config"
	"ferry/plugins"
	"ferry/state"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is a settable clock for the plugin.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// load builds an instance from the plugin table's keys, as ferry does,
// over store st.
func load(t testing.TB, opts string, st *state.Store) (*Plugin, error) {
	t.Helper()
	src := "[[listener]]\nlisten = \"127.0.0.1:0\"\nplugins = [\"q\"]\n\n[[plugin]]\nname = \"q\"\ntype = \"quota\"\n" + opts
	cfg, err := config.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	pc := &cfg.Plugins[0]
	env := plugins.NewEnv(pc.Name, zerolog.Nop(), plugins.NewServices(), pc.Decode)
	env.State = func() (*state.Store, error) { return st, nil }
	p, err := New(env)
	if err != nil {
		return nil, pc.WrapError(err)
	}
	return p.(*Plugin), nil
}

// setup is an instance on a memory store whose clock starts at a time
// after now (so the store does not take its periods for expired).
func setup(t testing.TB, opts string) (*Plugin, *state.Memory, *clock) {
	t.Helper()
	m := state.NewMemory()
	st := state.New(state.Config{Backend: m, FlushEvery: time.Hour, Log: zerolog.Nop()})
	t.Cleanup(func() { st.Close(context.Background()) })
	p, err := load(t, opts, st)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2030, 3, 10, 12, 0, 0, 0, time.UTC)}
	p.now = c.Now
	return p, m, c
}

func session(id, user string, groups ...string) *plugins.Session {
	return &plugins.Session{ID: id, User: user, Groups: groups,
		Client: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		opts string
		want []string
	}{
		{name: "no limit", opts: "", want: []string{"no limit"}},
		{name: "every problem", opts: `timezone = "Mars/Olympus"
[[plugin.limit]]
per = "team"
direction = "sideways"
bytes = 0
period = "year"
`, want: []string{
			`test.toml:8:1: plugin[0].timezone: unknown time zone "Mars/Olympus"`,
			`test.toml:10:1: plugin[0].limit[0].per: unknown value "team"`,
			`plugin[0].limit[0].direction: unknown value "sideways"`,
			`plugin[0].limit[0].bytes: must be positive`,
			`plugin[0].limit[0].period: unknown period "year"`,
		}},
		{name: "period and window", opts: "[[plugin.limit]]\nper = \"user\"\nbytes = 1\nperiod = \"day\"\nwindow = \"1h\"\n",
			want: []string{"limit[0].window: give period or window, not both"}},
		{name: "no period", opts: "[[plugin.limit]]\nper = \"user\"\nbytes = 1\n", want: []string{"limit[0].period: missing"}},
		{name: "short window", opts: "[[plugin.limit]]\nper = \"user\"\nbytes = 1\nwindow = \"10s\"\n", want: []string{"limit[0].window: must be at least 1m"}},
		{name: "duplicate names", opts: "[[plugin.limit]]\nname = \"a\"\nper = \"user\"\nbytes = 1\nperiod = \"day\"\n[[plugin.limit]]\nname = \"a\"\nper = \"client\"\nbytes = 1\nperiod = \"day\"\n",
			want: []string{`limit[1].name: duplicate name "a" (also limit[0])`}},
		{name: "unknown key", opts: "[[plugin.limit]]\nper = \"user\"\nbytes = 1\nperiod = \"day\"\nbudget = 1\n", want: []string{"limit[0].budget: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.opts, nil)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

const daily = `[[plugin.limit]]
name = "daily"
per = "user"
bytes = 1000
period = "day"
`

// TestRefuseAtLimit: channels count as bytes flow; once the budget is
// spent the next channel is refused with a message naming it, and a new
// day gives it back.
func TestRefuseAtLimit(t *testing.T) {
	p, _, c := setup(t, daily)
	ctx := context.Background()
	s := session("1", "alice")
	if err := p.OnConnect(ctx, s); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if keep, err := p.OnBytes(s, plugins.Down, 100); err != nil || keep != 100 {
			t.Fatalf("OnBytes: %d bytes, %v; want 100 passed (no end_live)", keep, err)
		}
	}
	p.OnClose(s, plugins.Stats{})
	err := p.OnConnect(ctx, session("2", "alice"))
	var re *plugins.RejectError
	if !errors.As(err, &re) || re.Code != plugins.CodeForbidden || !strings.Contains(re.Msg, `quota "daily" of user:alice spent`) {
		t.Fatalf("at the limit: got %v, want a 403 naming the quota", err)
	}
	if err := p.OnConnect(ctx, session("3", "bob")); err != nil {
		t.Errorf("another user: %v", err)
	}
	if err := p.OnConnect(ctx, session("4", "")); err != nil {
		t.Errorf("no user: %v", err)
	}
	c.add(12 * time.Hour)
	if err := p.OnConnect(ctx, session("5", "alice")); err != nil {
		t.Errorf("the next day: %v", err)
	}
}

// TestEndLive: the chunk that spends the budget is cut to what fits and
// ends the channel, so does any later one, and the access-log field
// names the quota.
func TestEndLive(t *testing.T) {
	p, _, _ := setup(t, "end_live = true\n"+daily)
	s := session("1", "alice")
	if err := p.OnConnect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if keep, err := p.OnBytes(s, plugins.Up, 900); err != nil || keep != 900 {
		t.Fatalf("first chunk: %d, %v", keep, err)
	}
	if keep, err := p.OnBytes(s, plugins.Down, 300); !errors.Is(err, plugins.ErrClose) || keep != 100 {
		t.Fatalf("crossing chunk: %d bytes, %v; want the 100 that fit and ErrClose", keep, err)
	}
	if keep, err := p.OnBytes(s, plugins.Down, 300); !errors.Is(err, plugins.ErrClose) || keep != 0 {
		t.Fatalf("next chunk: %d bytes, %v, want none and ErrClose", keep, err)
	}
	if f := s.LogFields(); len(f) != 1 || f[0] != (plugins.LogField{Key: "quota", Value: "daily"}) {
		t.Errorf("log fields %v, want quota=daily", f)
	}
	us, err := p.Usage(context.Background())
	if err != nil || len(us) != 1 || us[0].Used != 1000 {
		t.Errorf("usage %+v, %v; want 1000 used (the cut bytes not counted)", us, err)
	}
}

// TestDirectionsAndScopes: up, down, group and client limits count what
// they should.
func TestDirectionsAndScopes(t *testing.T) {
	p, _, _ := setup(t, `[[plugin.limit]]
name = "up"
per = "user"
direction = "up"
bytes = 100
period = "week"
[[plugin.limit]]
name = "team"
per = "group"
direction = "down"
bytes = 100
period = "month"
[[plugin.limit]]
name = "addr"
per = "client"
bytes = 1000
window = "1h"
`)
	if ds := p.DataDirections(); ds != plugins.BothData {
		t.Errorf("directions %v, want both", ds)
	}
	ctx := context.Background()
	s := session("1", "alice", "ops", "staff")
	if err := p.OnConnect(ctx, s); err != nil {
		t.Fatal(err)
	}
	p.OnBytes(s, plugins.Up, 60)
	p.OnBytes(s, plugins.Down, 150)
	p.OnClose(s, plugins.Stats{})
	us, err := p.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, u := range us {
		got[u.Quota+" "+u.Per+":"+u.Subject] = u.Used
	}
	want := map[string]int64{"up user:alice": 60, "team group:ops": 150, "team group:staff": 150, "addr client:192.0.2.1": 210}
	if len(got) != len(want) {
		t.Errorf("usage %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("usage %s = %d, want %d", k, got[k], v)
		}
	}
	err = p.OnConnect(ctx, session("2", "bob", "ops"))
	if err == nil || !strings.Contains(err.Error(), `quota "team" of group:ops spent`) {
		t.Errorf("bob of the spent group: %v", err)
	}
}

// TestWindow: a rolling window's usage falls back as its buckets leave.
func TestWindow(t *testing.T) {
	p, _, c := setup(t, "[[plugin.limit]]\nname = \"w\"\nper = \"user\"\nbytes = 100\nwindow = \"1h\"\n")
	ctx := context.Background()
	s := session("1", "alice")
	if err := p.OnConnect(ctx, s); err != nil {
		t.Fatal(err)
	}
	p.OnBytes(s, plugins.Down, 100)
	p.OnClose(s, plugins.Stats{})
	c.add(30 * time.Minute)
	if err := p.OnConnect(ctx, session("2", "alice")); err == nil {
		t.Fatal("half an hour later: admitted, want refused")
	}
	c.add(31 * time.Minute)
	if err := p.OnConnect(ctx, session("3", "alice")); err != nil {
		t.Errorf("an hour later: %v", err)
	}
}

// TestResetUsage: a reset gives the budget back, live accounts included.
func TestResetUsage(t *testing.T) {
	p, _, _ := setup(t, daily)
	ctx := context.Background()
	s := session("1", "alice")
	p.OnConnect(ctx, s)
	p.OnBytes(s, plugins.Down, 1000)
	if err := p.OnConnect(ctx, session("2", "alice")); err == nil {
		t.Fatal("spent budget: admitted")
	}
	if _, err := p.ResetUsage(ctx, "user:alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.OnConnect(ctx, session("3", "alice")); err != nil {
		t.Errorf("after reset: %v", err)
	}
}

// TestStoreDown: fail_open admits while the store cannot be read,
// fail_closed refuses.
func TestStoreDown(t *testing.T) {
	for _, tt := range []struct {
		onError state.OnError
		admit   bool
	}{{state.FailOpen, true}, {state.FailClosed, false}} {
		m := state.NewMemory()
		m.SetFail(errors.New("down"))
		st := state.New(state.Config{Backend: m, OnError: tt.onError, FlushEvery: time.Hour, Log: zerolog.Nop()})
		p, err := load(t, daily, st)
		if err != nil {
			t.Fatal(err)
		}
		err = p.OnConnect(context.Background(), session("1", "alice"))
		if (err == nil) != tt.admit {
			t.Errorf("on_error %v: got %v, want admitted: %v", tt.onError, err, tt.admit)
		}
		st.Close(context.Background())
	}
}
