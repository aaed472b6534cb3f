package replace

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
)

func sizePtr(n int) *config.Size {
	s := config.Size(n)
	return &s
}

func durPtr(d time.Duration) *config.Duration {
	c := config.Duration(d)
	return &c
}

// decodeEnv hands New a table the way the server does, strictly.
func decodeEnv(t *testing.T, table string) plugins.Env {
	t.Helper()
	return plugins.NewEnv("rw", zerolog.Nop(), plugins.NewServices(), func(v any) error {
		d := toml.NewDecoder(strings.NewReader(table))
		d.DisallowUnknownFields()
		return d.Decode(v)
	})
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name  string
		table string
		want  string
	}{
		{"no rules", ``, "rule: add at least one"},
		{"no direction", `rule = [{find = "a"}]`, "rule[0].direction: missing"},
		{"bad direction", `rule = [{direction = "in", find = "a"}]`, `rule[0].direction: "in" is not up, down or both`},
		{"no pattern", `rule = [{direction = "up", replace = "a"}]`, "rule[0].find: set find"},
		{"both patterns", `rule = [{direction = "up", find = "a", regexp = "b"}]`, "rule[0].regexp: set find or regexp, not both"},
		{"bad regexp", `rule = [{direction = "up", find = "x"}, {direction = "up", regexp = "a("}]`, "rule[1].regexp: error parsing regexp"},
		{"caret", `rule = [{direction = "up", regexp = "^GET"}]`, "rule[0].regexp: ^ or \\A has no meaning on a stream"},
		{"multiline caret", `rule = [{direction = "up", regexp = "(?m)^Host"}]`, "rule[0].regexp: ^ (with (?m)) has no meaning"},
		{"dollar", `rule = [{direction = "up", regexp = "x$"}]`, "rule[0].regexp: $ or \\z has no meaning"},
		{"word boundary", `rule = [{direction = "down", regexp = '\bfoo'}]`, "rule[0].regexp: \\b has no meaning"},
		{"empty match", `rule = [{direction = "up", regexp = "a*"}]`, "rule[0].regexp: matches the empty string"},
		{"max_match too small", "max_match = \"2B\"\nrule = [{direction = \"up\", find = \"a\"}]", "max_match: must be between 4B and 1MiB"},
		{"max_match too large", "max_match = \"2MiB\"\nrule = [{direction = \"up\", find = \"a\"}]", "max_match: must be between"},
		{"unknown key", `rule = [{direction = "up", find = "a", replacement = "b"}]`, "missing in the target struct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(decodeEnv(t, tt.table))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestHooksByDirection: an instance implements the hooks of the
// directions its rules use, and only those.
func TestHooksByDirection(t *testing.T) {
	tests := []struct {
		name               string
		dirs               []string
		wantRead, wantWrit bool
	}{
		{"up", []string{"up"}, true, false},
		{"down", []string{"down"}, false, true},
		{"both", []string{"both"}, true, true},
		{"up and down", []string{"up", "down"}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var table strings.Builder
			for _, d := range tt.dirs {
				table.WriteString("[[rule]]\ndirection = \"" + d + "\"\nfind = \"x\"\n")
			}
			p, err := New(decodeEnv(t, table.String()))
			if err != nil {
				t.Fatal(err)
			}
			_, isR := p.(plugins.Reader)
			_, isW := p.(plugins.Writer)
			_, isC := p.(plugins.Closer)
			if isR != tt.wantRead || isW != tt.wantWrit || !isC || p.Name() != "rw" {
				t.Fatalf("got reader=%v writer=%v closer=%v name=%q, want %v %v true rw", isR, isW, isC, p.Name(), tt.wantRead, tt.wantWrit)
			}
		})
	}
}

// fakeLink is the relay's side of a Session: it records what reaches each
// side, hook output and injected bytes alike, in order.
type fakeLink struct {
	mu       sync.Mutex
	up, down bytes.Buffer
	fail     error
	changed  chan struct{}
}

func newFakeLink() *fakeLink { return &fakeLink{changed: make(chan struct{}, 1)} }

func (l *fakeLink) write(d direction, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	if d == up {
		l.up.Write(p)
	} else {
		l.down.Write(p)
	}
	select {
	case l.changed <- struct{}{}:
	default:
	}
	return nil
}

func (l *fakeLink) SendUpstream(p []byte) error { return l.write(up, p) }
func (l *fakeLink) SendClient(p []byte) error   { return l.write(down, p) }

func (l *fakeLink) got(d direction) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d == up {
		return l.up.String()
	}
	return l.down.String()
}

// waitFor waits until the link's d side has received want.
func (l *fakeLink) waitFor(t *testing.T, d direction, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for l.got(d) != want {
		select {
		case <-l.changed:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s side got %q, want %q", d, l.got(d), want)
		}
	}
}

func newSession(proto string, l plugins.Link) *plugins.Session {
	s := &plugins.Session{ID: "t1", Protocol: proto, Log: zerolog.Nop()}
	if l != nil {
		s.Attach(l)
	}
	return s
}

func testPlugin(t *testing.T, flush time.Duration, rules ...Rule) *Plugin {
	t.Helper()
	p, err := newPlugin("rw", Config{FlushAfter: durPtr(flush), Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// deliver is the relay: the hook's output, if any, goes to the link.
func deliver(t *testing.T, p *Plugin, s *plugins.Session, l *fakeLink, d direction, b []byte) {
	t.Helper()
	out, err := p.rewrite(s, d, b)
	if err != nil {
		t.Fatalf("hook: %v", err)
	}
	if len(out) > 0 {
		l.write(d, out)
	}
}

func TestFlushAfterQuiet(t *testing.T) {
	// Long enough that back-to-back calls never see it pass, even under
	// -race on a loaded machine.
	const flush = 150 * time.Millisecond
	p := testPlugin(t, flush,
		Rule{Direction: "down", Find: "Server: nginx", Replace: "Server: ferry"},
		Rule{Direction: "up", Regexp: `pass(word)?: \S+`, Replace: "pass: ***"})
	l := newFakeLink()
	s := newSession("tcp", l)

	// A prompt whose tail could begin a match reaches the user once the
	// quiet time has passed.
	deliver(t, p, s, l, down, []byte("login ok\r\nServer: ng"))
	if got := l.got(down); got != "login ok\r\n" {
		t.Fatalf("at once: got %q, want %q", got, "login ok\r\n")
	}
	l.waitFor(t, down, "login ok\r\nServer: ng")

	// The rest of a match coming in time is replaced, and nothing is
	// flushed twice.
	deliver(t, p, s, l, up, []byte("user bob pass"))
	deliver(t, p, s, l, up, []byte("word: hunter2"))
	deliver(t, p, s, l, up, []byte("\n"))
	l.waitFor(t, up, "user bob pass: ***\n")
	time.Sleep(2 * flush)
	if got := l.got(up); got != "user bob pass: ***\n" {
		t.Fatalf("later: got %q", got)
	}

	// A match in progress when the quiet time ends counts as it stands.
	deliver(t, p, s, l, up, []byte("pass: abc"))
	l.waitFor(t, up, "user bob pass: ***\npass: ***")
}

func TestFlushOffHoldsUntilNextRead(t *testing.T) {
	p := testPlugin(t, 0, Rule{Direction: "up", Find: "abc", Replace: "X"})
	l := newFakeLink()
	s := newSession("tcp", l)
	out, _ := p.rewrite(s, up, []byte("xxab"))
	if string(out) != "xx" {
		t.Fatalf("got %q, want xx returned (ab held)", out)
	}
	time.Sleep(30 * time.Millisecond)
	if got := l.got(up); got != "" {
		t.Fatalf("flush_after 0 sent %q by itself", got)
	}
	out, _ = p.rewrite(s, up, []byte("cd"))
	if string(out) != "Xd" {
		t.Fatalf("got %q, want Xd", out)
	}
}

func TestPlainHTTPHoldsNothing(t *testing.T) {
	p := testPlugin(t, 20*time.Millisecond, Rule{Direction: "down", Find: "nginx", Replace: "ferry"})
	s := newSession("http", newFakeLink())
	for _, tt := range []struct{ in, want string }{
		{"Server: nginx\r\nX: ngi", "Server: ferry\r\nX: ngi"},
		{"nx", "nx"},
	} {
		out, err := p.rewrite(s, down, []byte(tt.in))
		if err != nil || string(out) != tt.want {
			t.Fatalf("got %q, %v, want %q", out, err, tt.want)
		}
	}
}

func TestCloseStopsFlush(t *testing.T) {
	const flush = 100 * time.Millisecond
	p := testPlugin(t, flush, Rule{Direction: "up", Find: "abc", Replace: "X"})
	l := newFakeLink()
	s := newSession("tcp", l)
	deliver(t, p, s, l, up, []byte("1ab"))
	p.OnClose(s, plugins.Stats{})
	time.Sleep(3 * flush)
	if got := l.got(up); got != "1" {
		t.Fatalf("got %q after close, want 1", got)
	}
}

func TestSendFailureReturnsBytes(t *testing.T) {
	p := testPlugin(t, 10*time.Millisecond, Rule{Direction: "up", Find: "abc", Replace: "X"})
	l := newFakeLink()
	l.fail = errors.New("broken pipe")
	s := newSession("tcp", l)
	out, err := p.rewrite(s, up, []byte("abc!"))
	if err != nil || string(out) != "X!" {
		t.Fatalf("got %q, %v, want X! for the relay to write", out, err)
	}
	// No link at all: the bytes go on through the relay.
	s = newSession("tcp", nil)
	out, err = p.rewrite(s, up, []byte("abc!"))
	if err != nil || string(out) != "X!" {
		t.Fatalf("no link: got %q, %v, want X!", out, err)
	}
}

// TestConcurrentDirections drives many channels, each with a reader and a
// writer goroutine and pauses around flush_after, so hook calls and timer
// flushes interleave. Every byte must arrive once and in order: undoing
// the replacements gives back the input. Run with -race.
func TestConcurrentDirections(t *testing.T) {
	const flush = 2 * time.Millisecond
	p := testPlugin(t, flush,
		Rule{Direction: "both", Find: "abc", Replace: "X"},
		Rule{Direction: "down", Regexp: `b[d]`, Replace: "Y"})
	undo := strings.NewReplacer("X", "abc", "Y", "bd")
	type channel struct {
		l      *fakeLink
		s      *plugins.Session
		inputs [2][]byte
	}
	var chans []*channel
	var wg sync.WaitGroup
	for i := range 8 {
		c := &channel{l: newFakeLink()}
		c.s = newSession("tcp", c.l)
		chans = append(chans, c)
		for _, d := range []direction{up, down} {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(d)))
			c.inputs[d] = randomText(rng, "abcd", 3000)
			wg.Go(func() {
				for _, chunk := range randomSplit(rng, c.inputs[d]) {
					in := bytes.Clone(chunk)
					out, err := p.rewrite(c.s, d, in)
					if err != nil {
						t.Errorf("hook: %v", err)
						return
					}
					if len(out) > 0 {
						c.l.write(d, out)
					}
					clear(in) // the relay reuses its buffer
					if rng.IntN(8) == 0 {
						time.Sleep(time.Duration(rng.IntN(4)) * flush / 2)
					}
				}
			})
		}
	}
	wg.Wait()
	for i, c := range chans {
		for _, d := range []direction{up, down} {
			want := string(c.inputs[d])
			deadline := time.Now().Add(5 * time.Second)
			for undo.Replace(c.l.got(d)) != want {
				if time.Now().After(deadline) {
					t.Fatalf("channel %d %s: got %q, which does not undo to the input %q", i, d, c.l.got(d), want)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		p.OnClose(c.s, plugins.Stats{})
	}
}
