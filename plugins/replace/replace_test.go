package replace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/units"
	"ferry/relay"
)

func sizePtr(n int) *units.Size {
	s := units.Size(n)
	return &s
}

func durPtr(d time.Duration) *units.Duration {
	c := units.Duration(d)
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
		{"bad plugins.Direction", `rule = [{direction = "in", find = "a"}]`, `rule[0].direction: "in" is not up, down or both`},
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
		{"bad scope", `rule = [{scope = "message", direction = "up", find = "a"}]`, `rule[0].scope: "message" is not stream or body`},
		{"content_type on stream", `rule = [{direction = "down", find = "a", content_type = ["text/html"]}]`, `rule[0].content_type: only for body rules`},
		{"content_type on explicit stream", `rule = [{scope = "stream", direction = "down", find = "a", content_type = ["text/html"]}]`, `rule[0].content_type: only for body rules`},
		{"not a media type", `rule = [{scope = "body", direction = "down", find = "a", content_type = ["text/html", "html"]}]`, `rule[0].content_type[1]: "html" is not a media type`},
		{"parameters", `rule = [{scope = "body", direction = "down", find = "a", content_type = ["text/html; charset=utf-8"]}]`, `rule[0].content_type[0]: "text/html; charset=utf-8" has parameters`},
		{"wildcard type", `rule = [{scope = "body", direction = "down", find = "a", content_type = ["*/html"]}]`, `rule[0].content_type[0]: "*/html": a wildcard type needs`},
		{"bad token", `rule = [{scope = "body", direction = "down", find = "a", content_type = ["text/ht ml"]}]`, `rule[0].content_type[0]: "text/ht ml" is not a media type`},
		{"empty body regexp", `rule = [{scope = "body", direction = "down", regexp = "(?m)^"}]`, `rule[0].regexp: matches the empty string`},
		{"body without direction", `rule = [{scope = "body", find = "a"}]`, `rule[0].direction: missing`},
		{"stream anchor hints body", `rule = [{direction = "down", regexp = "^a"}]`, `use a body rule`},
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
			ds := plugins.DataDirectionsOf(p)
			isR, isW := ds.Has(plugins.Up), ds.Has(plugins.Down)
			_, isRE := p.(plugins.ReadEnder)
			_, isWE := p.(plugins.WriteEnder)
			isRE, isWE = isRE && isR, isWE && isW
			_, isC := p.(plugins.Closer)
			if isR != tt.wantRead || isW != tt.wantWrit || !isC || p.Name() != "rw" {
				t.Fatalf("got reader=%v writer=%v closer=%v name=%q, want %v %v true rw", isR, isW, isC, p.Name(), tt.wantRead, tt.wantWrit)
			}
			if isRE != isR || isWE != isW {
				t.Fatalf("got read ender=%v write ender=%v, want them with the reader (%v) and writer (%v)", isRE, isWE, isR, isW)
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

func (l *fakeLink) write(d plugins.Direction, p []byte) error {
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

func (l *fakeLink) got(d plugins.Direction) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d == up {
		return l.up.String()
	}
	return l.down.String()
}

// waitFor waits until the link's d side has received want.
func (l *fakeLink) waitFor(t *testing.T, d plugins.Direction, want string) {
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
func deliver(t *testing.T, p *Plugin, s *plugins.Session, l *fakeLink, d plugins.Direction, b []byte) {
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

// endHook calls the end hook of direction d, as the relay does at EOF.
func endHook(p *Plugin, s *plugins.Session, d plugins.Direction) ([]byte, error) {
	if d == up {
		return p.OnReadEnd(s)
	}
	return p.OnWriteEnd(s)
}

// TestEndReleasesHeldTail: when a direction ends, the held tail is
// rewritten as the end of the stream (a match in progress counts as it
// stands) and released: returned to the relay with the timer off, sent
// through the link with it on. Nothing is held afterwards, and a stream
// that goes on after an end (an upgraded plain HTTP connection) starts
// afresh.
func TestEndReleasesHeldTail(t *testing.T) {
	rules := []Rule{
		{Direction: "down", Find: "Server: nginx", Replace: "Server: ferry"},
		{Direction: "up", Regexp: `pass(word)?: \S+`, Replace: "pass: ***"},
	}
	tests := []struct {
		name     string
		flush    time.Duration
		d        plugins.Direction
		in       []string
		wantOut  string // what the hooks passed on before the end
		wantTail string // what the end released
	}{
		{name: "literal prefix, timer off", d: down, in: []string{"ready> Serv"}, wantOut: "ready> ", wantTail: "Serv"},
		{name: "regexp in progress, timer off", d: up, in: []string{"user bob pass", "word: hun"}, wantOut: "user bob ", wantTail: "pass: ***"},
		{name: "literal prefix, timer on", flush: time.Hour, d: down, in: []string{"ready> Serv"}, wantOut: "ready> ", wantTail: "Serv"},
		{name: "regexp in progress, timer on", flush: time.Hour, d: up, in: []string{"user bob pass", "word: hun"}, wantOut: "user bob ", wantTail: "pass: ***"},
		{name: "nothing held", d: down, in: []string{"Server: nginx\r\n"}, wantOut: "Server: ferry\r\n", wantTail: ""},
		{name: "nothing came", d: up, wantTail: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPlugin(t, tt.flush, rules...)
			l := newFakeLink()
			s := newSession("tcp", l)
			for _, in := range tt.in {
				deliver(t, p, s, l, tt.d, []byte(in))
			}
			if got := l.got(tt.d); got != tt.wantOut {
				t.Fatalf("before the end: got %q, want %q", got, tt.wantOut)
			}
			tail, err := endHook(p, s, tt.d)
			if err != nil {
				t.Fatalf("end: %v", err)
			}
			if tt.flush > 0 && len(tail) > 0 {
				t.Errorf("timer on: end returned %q, want it sent through the link", tail)
			}
			l.write(tt.d, tail)
			if got := l.got(tt.d); got != tt.wantOut+tt.wantTail {
				t.Errorf("after the end: got %q, want %q", got, tt.wantOut+tt.wantTail)
			}
			if tail, _ := endHook(p, s, tt.d); len(tail) > 0 {
				t.Errorf("a second end released %q, want nothing", tail)
			}
			// The stream goes on afresh: what was held is not prepended.
			deliver(t, p, s, l, tt.d, []byte("nginx\n"))
			if got := l.got(tt.d); got != tt.wantOut+tt.wantTail+"nginx\n" {
				t.Errorf("after more bytes: got %q, want %q", got, tt.wantOut+tt.wantTail+"nginx\n")
			}
			p.OnClose(s, plugins.Stats{})
		})
	}
}

// TestEndStopsFlush: the end releases the tail at once and the timer does
// not send it again.
func TestEndStopsFlush(t *testing.T) {
	const flush = 50 * time.Millisecond
	p := testPlugin(t, flush, Rule{Direction: "up", Find: "abc", Replace: "X"})
	l := newFakeLink()
	s := newSession("tcp", l)
	deliver(t, p, s, l, up, []byte("1ab"))
	if _, err := endHook(p, s, up); err != nil {
		t.Fatal(err)
	}
	if got := l.got(up); got != "1ab" {
		t.Fatalf("at the end: got %q, want 1ab", got)
	}
	time.Sleep(3 * flush)
	if got := l.got(up); got != "1ab" {
		t.Fatalf("after flush_after: got %q, want 1ab once", got)
	}
}

// TestPlainHTTPMessages: a plain HTTP message is a stream of its own: a
// match split between two writes of it is found, and its tail is
// released by the end of the message. Messages do not use the timer: the
// hooks return their output for the server to write. A connection
// upgraded from plain HTTP (101) is a tunnel and does.
func TestPlainHTTPMessages(t *testing.T) {
	const flush = 20 * time.Millisecond
	tests := []struct {
		name     string
		flush    time.Duration
		status   int
		wantSent bool // output and tail sent through the link by the plugin
	}{
		{name: "timer off", flush: 0},
		{name: "timer set", flush: flush},
		{name: "upgraded", flush: flush, status: 101, wantSent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPlugin(t, tt.flush, Rule{Direction: "down", Find: "nginx", Replace: "ferry"})
			l := newFakeLink()
			s := newSession("http", l)
			s.Status = tt.status
			var returned bytes.Buffer
			for _, in := range []string{"Server: ng", "inx\r\n\r\nbody ngi"} {
				out, err := p.rewrite(s, down, []byte(in))
				if err != nil {
					t.Fatal(err)
				}
				returned.Write(out)
			}
			time.Sleep(3 * flush)
			const held = "Server: ferry\r\n\r\nbody "
			if tt.wantSent {
				if got := l.got(down); got != held+"ngi" {
					t.Fatalf("upgraded: the plugin sent %q, want %q (the tail by the timer)", got, held+"ngi")
				}
				return
			}
			if got := l.got(down); got != "" {
				t.Fatalf("the plugin sent %q itself, want nothing", got)
			}
			if got := returned.String(); got != held {
				t.Fatalf("returned %q before the end, want %q", got, held)
			}
			tail, err := endHook(p, s, down)
			if err != nil {
				t.Fatal(err)
			}
			if string(tail) != "ngi" {
				t.Fatalf("end returned %q, want ngi", tail)
			}
		})
	}
}

// recorder is a data plugin that notes what reaches it, each way.
type recorder struct {
	mu       sync.Mutex
	up, down bytes.Buffer
}

func (*recorder) Name() string { return "recorder" }

func (r *recorder) OnRead(_ *plugins.Session, b []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.up.Write(b)
	return b, nil
}

func (r *recorder) OnWrite(_ *plugins.Session, b []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down.Write(b)
	return b, nil
}

func (r *recorder) got(d plugins.Direction) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d == up {
		return r.up.String()
	}
	return r.down.String()
}

// TestEndThroughChain: with the timer off, what replace releases at the
// end passes through the plugins after it (for down, those listed before
// it), like the rest of its output; with the timer on they see nothing of
// the direction.
func TestEndThroughChain(t *testing.T) {
	for _, flush := range []time.Duration{0, time.Hour} {
		for _, d := range []plugins.Direction{up, down} {
			t.Run(fmt.Sprintf("%s flush_after %v", d, flush), func(t *testing.T) {
				pl, err := New(decodeEnv(t, fmt.Sprintf("flush_after = %q\nrule = [{direction = %q, find = \"Server: nginx\", replace = \"Server: ferry\"}]", flush, d)))
				if err != nil {
					t.Fatal(err)
				}
				rec := &recorder{}
				ps := []plugins.Plugin{pl, rec} // up: replace, then rec
				if d == down {
					ps = []plugins.Plugin{rec, pl} // down runs in reverse
				}
				chain := plugins.NewChain(ps)
				l := newFakeLink()
				s := newSession("tcp", l)
				run, end := chain.Read, chain.ReadEnd
				if d == down {
					run, end = chain.Write, chain.WriteEnd
				}
				for _, in := range []string{"Server: ngi", "nx\r\nok Se"} {
					out, err := run(s, []byte(in))
					if err != nil {
						t.Fatal(err)
					}
					l.write(d, out)
				}
				out, err := end(s)
				if err != nil {
					t.Fatal(err)
				}
				l.write(d, out)
				const want = "Server: ferry\r\nok Se"
				if got := l.got(d); got != want {
					t.Errorf("delivered %q, want %q", got, want)
				}
				wantSeen := want
				if flush > 0 {
					wantSeen = ""
				}
				if got := rec.got(d); got != wantSeen {
					t.Errorf("the later plugin saw %q, want %q", got, wantSeen)
				}
			})
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
// flushes interleave, and ends each direction, racing a last flush. Every
// byte must have arrived once and in order when the end hook returns:
// undoing the replacements gives back the input. Run with -race.
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
		for _, d := range []plugins.Direction{up, down} {
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
				out, err := endHook(p, c.s, d)
				if err != nil {
					t.Errorf("end: %v", err)
					return
				}
				if len(out) > 0 {
					c.l.write(d, out)
				}
			})
		}
	}
	wg.Wait()
	for i, c := range chans {
		for _, d := range []plugins.Direction{up, down} {
			if got, want := c.l.got(d), string(c.inputs[d]); undo.Replace(got) != want {
				t.Fatalf("channel %d %s: got %q, which does not undo to the input %q", i, d, got, want)
			}
		}
		p.OnClose(c.s, plugins.Stats{})
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		accepted <- c
	}()
	a, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	b = <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// sendThenClose writes parts with a pause between them, so that they
// arrive as separate reads, then half-closes c.
func sendThenClose(c *net.TCPConn, parts ...string) error {
	for i, p := range parts {
		if i > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := io.WriteString(c, p); err != nil {
			return err
		}
	}
	return c.CloseWrite()
}

// TestEndOverRelay runs a real relay.Channel over loopback TCP: each side
// sends bytes whose last ones could begin a match, then half-closes. The
// held tail must reach the other side before the FIN (a match in
// progress rewritten as the end of the stream), with the timer off and
// with a timer far too long to be what released it. With the timer off,
// the plugin after replace sees the tail too.
func TestEndOverRelay(t *testing.T) {
	const (
		upWant   = "GET / HTTP/1.1\r\nUser-Agent: ferry"
		downWant = "HTTP/1.1 200 OK\r\nServer: ferry\r\n\r\nready> Serv"
	)
	for _, flush := range []string{"0s", "1h"} {
		t.Run("flush_after "+flush, func(t *testing.T) {
			pl, err := New(decodeEnv(t, `flush_after = "`+flush+`"
[[rule]]
direction = "up"
regexp = 'User-Agent: [^\r\n]*'
replace = "User-Agent: ferry"
[[rule]]
direction = "down"
find = "Server: nginx"
replace = "Server: ferry"
`))
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			client, chClient := tcpPair(t)
			chUpstream, target := tcpPair(t)
			for _, c := range []*net.TCPConn{client, target} {
				c.SetDeadline(time.Now().Add(10 * time.Second))
			}
			s := &plugins.Session{ID: "t1", Protocol: "tcp", Log: zerolog.Nop()}
			// Up runs replace, then rec; down runs rec, then replace.
			ch := &relay.Channel{Client: chClient, Upstream: chUpstream, Session: s,
				Chain: plugins.NewChain([]plugins.Plugin{pl, rec})}
			done := make(chan relay.Result, 1)
			go func() { done <- ch.Run(context.Background()) }()

			start := time.Now()
			var wg sync.WaitGroup
			var upGot, downGot []byte
			var upErr, downErr error
			wg.Go(func() { upGot, upErr = io.ReadAll(target) })
			wg.Go(func() { downGot, downErr = io.ReadAll(client) })
			if err := sendThenClose(client, "GET / HTTP/1.1\r\nUser-Agent: cu", "rl/8.5"); err != nil {
				t.Fatal(err)
			}
			if err := sendThenClose(target, "HTTP/1.1 200 OK\r\nServer: ng", "inx\r\n\r\nready> Serv"); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			// ReadAll ends at the FIN: whatever came after it is not here.
			if upErr != nil || string(upGot) != upWant {
				t.Errorf("target got %q (%v) before the FIN, want %q", upGot, upErr, upWant)
			}
			if downErr != nil || string(downGot) != downWant {
				t.Errorf("client got %q (%v) before the FIN, want %q", downGot, downErr, downWant)
			}
			t.Logf("both ways through in %v", time.Since(start))
			res := <-done
			if res.Up != int64(len(upWant)) || res.Down != int64(len(downWant)) {
				t.Errorf("counted up %d, down %d, want %d, %d", res.Up, res.Down, len(upWant), len(downWant))
			}
			if res.Reason != plugins.ReasonClientClosed && res.Reason != plugins.ReasonUpstreamClosed {
				t.Errorf("close reason %v (%v), want an orderly close", res.Reason, res.Err)
			}
			wantSeen := upWant
			if flush != "0s" {
				wantSeen = ""
			}
			if got := rec.got(up); got != wantSeen {
				t.Errorf("the plugin after replace saw %q going up, want %q", got, wantSeen)
			}
			pl.(plugins.Closer).OnClose(s, plugins.Stats{})
		})
	}
}
