package replace

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"ferry/plugins"
	"ferry/plugins/pkg/units"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "replace",
		Description: "rewrites bytes or regexp matches in channel data across reads, or in whole decoded HTTP bodies",
		New:         New,
	})
}

// Defaults and bounds of the settings.
const (
	DefaultMaxMatch   = 4 << 10
	DefaultFlushAfter = 50 * time.Millisecond
	// maxMaxMatch bounds what one regexp rule may hold per channel and
	// direction.
	maxMaxMatch = 1 << 20
	// minMaxMatch keeps at least a whole UTF-8 encoding in view.
	minMaxMatch = 4
)

// Config is the plugin's TOML table.
type Config struct {
	// MaxMatch is the longest regexp match guaranteed to be found when it
	// spans reads, and so the most a regexp rule holds back per channel and
	// direction (minus one byte). Longer matches may be missed or cut
	// short. Literal rules need no bound. Default 4KiB; 4B to 1MiB.
	MaxMatch *units.Size `toml:"max_match"`
	// FlushAfter is how long a held tail waits for more bytes before it is
	// sent as it is. Default 50ms; the plugin then sends all of its output
	// itself, so plugins after it in a direction do not see that
	// direction's data. Zero turns the timer off: output passes through
	// the plugins after this one, and a held tail waits for the next read
	// or the end of the stream, however long that takes. Either way a
	// held tail is released when its direction ends. Plain HTTP messages
	// (not upgraded connections) never use the timer.
	FlushAfter *units.Duration `toml:"flush_after"`
	// Rules apply in order, each to the output of the one before.
	// At least one.
	Rules []Rule `toml:"rule"`
}

// Rule is one replacement.
type Rule struct {
	// Scope is "stream" (default): the rule rewrites channel data as it
	// passes (OnRead, OnWrite); or "body": it rewrites whole decoded HTTP
	// bodies (OnHTTPBody), plain and intercepted.
	Scope string `toml:"scope"`
	// Direction is "up" (client to upstream; request bodies for a body
	// rule), "down" (upstream to client; response bodies) or "both".
	// Required.
	Direction string `toml:"direction"`
	// ContentType limits a body rule to these media types ("text/html",
	// or "text/*" for a whole type), matched against the message's
	// Content-Type without parameters. Empty: every body. Body rules only.
	ContentType []string `toml:"content_type"`
	// Find is a literal byte string to replace. Set Find or Regexp.
	Find string `toml:"find"`
	// Regexp is an RE2 expression (Go syntax) to replace; it must not
	// match the empty string, and a stream rule's may not use ^, $, \A,
	// \z, \b or \B (a body rule's may: the body is one whole text).
	Regexp string `toml:"regexp"`
	// Replace is what each match becomes; empty deletes matches. For a
	// Regexp, $1, ${1} and ${name} expand to submatches and $$ is a $.
	Replace string `toml:"replace"`
}

// Plugin rewrites channel data and HTTP bodies. It has the data hooks
// of both directions and declares, with DataDirections, only those its
// stream rules use: a direction without them keeps the kernel splice
// path.
type Plugin struct {
	name     string
	up, down []*rule // stream rules
	// bodyUp and bodyDown are the body rules: request and response bodies.
	bodyUp, bodyDown []*rule
	flushAfter       time.Duration
}

var (
	_ plugins.Reader       = (*Plugin)(nil)
	_ plugins.ReadEnder    = (*Plugin)(nil)
	_ plugins.Writer       = (*Plugin)(nil)
	_ plugins.WriteEnder   = (*Plugin)(nil)
	_ plugins.Closer       = (*Plugin)(nil)
	_ plugins.DataDirector = (*Plugin)(nil)
)

// New builds an instance from its config table.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	return newPlugin(env.Name, cfg)
}

func newPlugin(name string, cfg Config) (*Plugin, error) {
	maxMatch := int64(DefaultMaxMatch)
	if cfg.MaxMatch != nil {
		maxMatch = int64(*cfg.MaxMatch)
	}
	if maxMatch < minMaxMatch || maxMatch > maxMaxMatch {
		return nil, plugins.Errorf("max_match", "must be between %dB and %s", minMaxMatch, units.Size(maxMaxMatch))
	}
	p := &Plugin{name: name, flushAfter: DefaultFlushAfter}
	if cfg.FlushAfter != nil {
		p.flushAfter = cfg.FlushAfter.D()
	}
	if len(cfg.Rules) == 0 {
		return nil, plugins.Errorf("rule", "add at least one [[plugin.rule]]")
	}
	for i, rc := range cfg.Rules {
		r, err := compileRule(rc, int(maxMatch))
		if err != nil {
			return nil, plugins.Within(fmt.Sprintf("rule[%d]", i), err)
		}
		p.add(r)
	}
	return p, nil
}

// add files r under its scope and directions.
func (p *Plugin) add(r *rule) {
	up, down := &p.up, &p.down
	if r.body {
		up, down = &p.bodyUp, &p.bodyDown
	}
	if r.up {
		*up = append(*up, r)
	}
	if r.down {
		*down = append(*down, r)
	}
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

// DataDirections implements plugins.DataDirector: the directions that
// have stream rules. Body rules need no data hook.
func (p *Plugin) DataDirections() plugins.Directions {
	var ds plugins.Directions
	if len(p.up) > 0 {
		ds |= plugins.UpData
	}
	if len(p.down) > 0 {
		ds |= plugins.DownData
	}
	return ds
}

// OnRead implements plugins.Reader.
func (p *Plugin) OnRead(s *plugins.Session, b []byte) ([]byte, error) {
	return p.rewrite(s, up, b)
}

// OnWrite implements plugins.Writer.
func (p *Plugin) OnWrite(s *plugins.Session, b []byte) ([]byte, error) {
	return p.rewrite(s, down, b)
}

// OnReadEnd implements plugins.ReadEnder.
func (p *Plugin) OnReadEnd(s *plugins.Session) ([]byte, error) { return p.end(s, up) }

// OnWriteEnd implements plugins.WriteEnder.
func (p *Plugin) OnWriteEnd(s *plugins.Session) ([]byte, error) { return p.end(s, down) }

// up and down are the two directions, named as in the rules.
const (
	up   = plugins.Up
	down = plugins.Down
)

// stateKey finds one instance's state for one direction in a Session.
type stateKey struct {
	p   *Plugin
	dir plugins.Direction
}

// stream is the per-channel, per-direction state: one stage per rule,
// each holding the bytes that may still begin a match. mu orders
// everything this plugin sends that way: the hook's output, the timer's
// flush and the end of the stream.
type stream struct {
	mu     sync.Mutex
	stages []stage
	gen    uint64      // counts hook calls and ends; a timer flushes only its own generation
	timer  *time.Timer // pending flush, nil if none
	closed bool
}

type stage struct {
	r    *rule
	held []byte
}

func (p *Plugin) stream(s *plugins.Session, d plugins.Direction) *stream {
	key := stateKey{p, d}
	if v := s.Value(key); v != nil {
		return v.(*stream)
	}
	rules := p.up
	if d == down {
		rules = p.down
	}
	st := &stream{stages: make([]stage, len(rules))}
	for i, r := range rules {
		st.stages[i].r = r
	}
	return s.LoadOrStore(key, st).(*stream)
}

// push runs b through every stage and returns what may go on. With final,
// the stages hold nothing back.
func (st *stream) push(b []byte, final bool) []byte {
	for i := range st.stages {
		b = st.stages[i].push(b, final)
	}
	return b
}

func (sg *stage) push(in []byte, final bool) []byte {
	w := in
	if len(sg.held) > 0 {
		w = make([]byte, 0, len(sg.held)+len(in))
		w = append(append(w, sg.held...), in...)
	}
	out, cut := sg.r.apply(w, final)
	// w is in (not ours to keep) or a fresh copy: never sg.held's array.
	sg.held = append(sg.held[:0], w[cut:]...)
	return out
}

// holding reports whether any stage holds bytes.
func (st *stream) holding() bool {
	for i := range st.stages {
		if len(st.stages[i].held) > 0 {
			return true
		}
	}
	return false
}

// timed reports whether held tails of s wait for the flush timer. Not
// for plain HTTP messages: each one ends its stream, so its tail goes out
// at its end anyway, and ferry passes a response on in buffer_size pieces
// (net/http does not flush response chunks), so a timer would add little.
// Output there is returned, written by the server like the rest of the
// message (with its idle write deadline), and seen by the plugins after
// this one. A connection upgraded
// from plain HTTP (status 101) is a tunnel and has the timer.
func (p *Plugin) timed(s *plugins.Session) bool {
	if p.flushAfter <= 0 {
		return false
	}
	return s.Protocol != "http" || s.Status == http.StatusSwitchingProtocols
}

// rewrite is OnRead and OnWrite. Without the timer it returns its output
// to the relay, to pass through the plugins after it. With the timer it
// sends the output itself, under st.mu, so that a flush can never
// overtake it, and returns nothing.
func (p *Plugin) rewrite(s *plugins.Session, d plugins.Direction, b []byte) ([]byte, error) {
	st := p.stream(s, d)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.stopTimer()
	out := st.push(b, false)
	if !p.timed(s) {
		return out, nil
	}
	if st.holding() && !st.closed {
		gen := st.gen
		st.timer = time.AfterFunc(p.flushAfter, func() { p.flush(s, d, st, gen) })
	}
	return p.sendLocked(s, d, out), nil
}

// end is OnReadEnd and OnWriteEnd: the direction's stream ended (the
// sender closed its side, or a plain HTTP message was written), so the
// held tails are rewritten as the end of the stream. The relay writes
// what end returns, after the plugins that follow, before it
// half-closes; with the timer, end sends it itself like rewrite.
func (p *Plugin) end(s *plugins.Session, d plugins.Direction) ([]byte, error) {
	v := s.Value(stateKey{p, d})
	if v == nil {
		return nil, nil // nothing came this way
	}
	st := v.(*stream)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.stopTimer()
	out := st.push(nil, true)
	if !p.timed(s) {
		return out, nil
	}
	return p.sendLocked(s, d, out), nil
}

// sendLocked sends out the way d goes, with st.mu held, and returns what
// the relay must write instead: nothing, unless sending failed.
func (p *Plugin) sendLocked(s *plugins.Session, d plugins.Direction, out []byte) []byte {
	if len(out) == 0 {
		return nil
	}
	if err := send(s, d, out); err != nil {
		// The relay's own write then fails the same way and ends the
		// channel with its usual close reason (a write error on a socket
		// is final, so a part written twice cannot reach the peer).
		// Without a link (not expected while the channel runs) the bytes
		// simply go on.
		return out
	}
	return nil
}

// stopTimer cancels a pending flush: a hook call or the end takes over.
// st.mu must be held; a flush already waiting for it sees gen changed.
func (st *stream) stopTimer() {
	st.gen++
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
}

// flush runs from the timer: no bytes came for flushAfter, so the held
// tails are rewritten as if the stream ended there and sent.
func (p *Plugin) flush(s *plugins.Session, d plugins.Direction, st *stream, gen uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || st.gen != gen {
		return // a later hook call or the end took over, or the channel ended
	}
	st.timer = nil
	out := st.push(nil, true)
	if len(out) == 0 {
		return
	}
	if err := send(s, d, out); err != nil {
		s.Log.Debug().Err(err).Str("plugin", p.name).Str("dir", d.String()).
			Int("bytes", len(out)).Msg("replace: held bytes not delivered")
	}
}

func send(s *plugins.Session, d plugins.Direction, b []byte) error {
	if d == up {
		return s.SendUpstream(b)
	}
	return s.SendClient(b)
}

// OnClose implements plugins.Closer: it stops pending flushes.
func (p *Plugin) OnClose(s *plugins.Session, _ plugins.Stats) {
	for _, d := range []plugins.Direction{up, down} {
		v := s.Value(stateKey{p, d})
		if v == nil {
			continue
		}
		st := v.(*stream)
		st.mu.Lock()
		st.closed = true
		if st.timer != nil {
			st.timer.Stop()
			st.timer = nil
		}
		for i := range st.stages {
			st.stages[i].held = nil
		}
		st.mu.Unlock()
	}
}
