package plugins

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"runtime/debug"
)

// HookError is an error or panic inside a plugin hook, tagged with the
// plugin's name once, at the boundary.
type HookError struct {
	Plugin string
	Hook   string
	Err    error
	// Stack is set when the hook panicked.
	Stack []byte
}

func (e *HookError) Error() string {
	return fmt.Sprintf("plugin %s: %s: %v", e.Plugin, e.Hook, e.Err)
}

func (e *HookError) Unwrap() error { return e.Err }

// Chain is a listener's plugins, sorted by the hooks they implement once,
// so the relay never type-asserts per chunk. A nil *Chain has no hooks.
type Chain struct {
	plugins     []Plugin
	connectors  []Plugin // implement Connector, config order
	closers     []Plugin // implement Closer, reverse order
	auths       []Plugin // implement Authenticator, config order
	dialChecks  []Plugin // implement DialChecker, config order
	httpReqs    []Plugin // implement HTTPRequester, config order
	httpResps   []Plugin // implement HTTPResponder, config order
	httpBodies  []Plugin // implement HTTPBodyHook, config order
	httpStreams []Plugin // implement HTTPBodyStreamer, config order
	intercepts  []Plugin // implement Interceptor, config order
	// data holds each direction's data hooks, by Direction: Up in config
	// order, Down in reverse order.
	data [2][]dataHook
	// meters holds each direction's Meters, config order.
	meters [2][]meterHook
	// maxChunk is the smallest ChunkLimiter's cap; 0 none.
	maxChunk int
	realm    string
}

// dataHook is one plugin's hooks for one direction, bound once when the
// Chain is built.
type dataHook struct {
	p    Plugin
	data func(*Session, []byte) ([]byte, error) // OnRead or OnWrite
	end  func(*Session) ([]byte, error)         // OnReadEnd or OnWriteEnd; nil if none
}

// meterHook is a Meter with its plugin's name at hand for errors.
type meterHook struct {
	p Plugin
	m Meter
}

// hookNames name each direction's hooks in a *HookError, by Direction.
var hookNames = [2]struct{ data, end string }{
	Up:   {"OnRead", "OnReadEnd"},
	Down: {"OnWrite", "OnWriteEnd"},
}

// NewChain orders ps (config order) into a Chain.
func NewChain(ps []Plugin) *Chain {
	c := &Chain{plugins: ps}
	for _, p := range ps {
		if _, ok := p.(Connector); ok {
			c.connectors = append(c.connectors, p)
		}
		if _, ok := p.(Authenticator); ok {
			c.auths = append(c.auths, p)
			if r, ok := p.(Realmer); ok && c.realm == "" {
				c.realm = r.Realm()
			}
		}
		if _, ok := p.(DialChecker); ok {
			c.dialChecks = append(c.dialChecks, p)
		}
		if _, ok := p.(HTTPRequester); ok {
			c.httpReqs = append(c.httpReqs, p)
		}
		if _, ok := p.(HTTPResponder); ok {
			c.httpResps = append(c.httpResps, p)
		}
		if _, ok := p.(HTTPBodyHook); ok {
			c.httpBodies = append(c.httpBodies, p)
		}
		if _, ok := p.(HTTPBodyStreamer); ok {
			c.httpStreams = append(c.httpStreams, p)
		}
		if _, ok := p.(Interceptor); ok {
			c.intercepts = append(c.intercepts, p)
		}
		if h, ok := upHook(p); ok {
			c.data[Up] = append(c.data[Up], h)
		}
		if cl, ok := p.(ChunkLimiter); ok {
			if n := cl.MaxChunk(); n > 0 && (c.maxChunk == 0 || n < c.maxChunk) {
				c.maxChunk = n
			}
		}
		for _, d := range [2]Direction{Up, Down} {
			if MeterDirectionsOf(p).Has(d) {
				c.meters[d] = append(c.meters[d], meterHook{p, p.(Meter)})
			}
		}
	}
	if c.realm == "" {
		c.realm = "ferry"
	}
	for i := len(ps) - 1; i >= 0; i-- {
		p := ps[i]
		if h, ok := downHook(p); ok {
			c.data[Down] = append(c.data[Down], h)
		}
		if _, ok := p.(Closer); ok {
			c.closers = append(c.closers, p)
		}
	}
	return c
}

// upHook binds p's client-to-upstream hooks, if it hooks that direction.
func upHook(p Plugin) (dataHook, bool) {
	if !DataDirectionsOf(p).Has(Up) {
		return dataHook{}, false
	}
	h := dataHook{p: p, data: p.(Reader).OnRead}
	if e, ok := p.(ReadEnder); ok {
		h.end = e.OnReadEnd
	}
	return h, true
}

// downHook binds p's upstream-to-client hooks, if it hooks that direction.
func downHook(p Plugin) (dataHook, bool) {
	if !DataDirectionsOf(p).Has(Down) {
		return dataHook{}, false
	}
	h := dataHook{p: p, data: p.(Writer).OnWrite}
	if e, ok := p.(WriteEnder); ok {
		h.end = e.OnWriteEnd
	}
	return h, true
}

// Plugins returns the chain's plugins in config order.
func (c *Chain) Plugins() []Plugin {
	if c == nil {
		return nil
	}
	return c.plugins
}

// RequiresAuth reports whether clients must authenticate.
func (c *Chain) RequiresAuth() bool { return c != nil && len(c.auths) > 0 }

// RestrictsClients reports whether the chain keeps unknown clients out:
// it authenticates, or a plugin says it limits clients.
func (c *Chain) RestrictsClients() bool {
	if c.RequiresAuth() {
		return true
	}
	if c == nil {
		return false
	}
	for _, p := range c.plugins {
		if r, ok := p.(ClientRestrictor); ok && r.RestrictsClients() {
			return true
		}
	}
	return false
}

// Realm is the realm of HTTP 407 challenges.
func (c *Chain) Realm() string {
	if c == nil {
		return "ferry"
	}
	return c.realm
}

// HasDialCheckers reports whether direct dials must be checked per address.
func (c *Chain) HasDialCheckers() bool { return c != nil && len(c.dialChecks) > 0 }

// Authenticate runs the Authenticators in order until one admits the
// client. When none does, the first refusal is returned, as a *HookError
// wrapping a *RejectError with CodeAuthRequired unless the plugin chose
// another code.
func (c *Chain) Authenticate(ctx context.Context, s *Session, user, password string) error {
	if c == nil || len(c.auths) == 0 {
		return nil
	}
	var first error
	for _, p := range c.auths {
		err := callAuth(ctx, p, s, user, password)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func callAuth(ctx context.Context, p Plugin, s *Session, user, password string) (err error) {
	defer recoverHook(p, "Authenticate", &err)
	if e := p.(Authenticator).Authenticate(ctx, s, user, password); e != nil {
		var re *RejectError
		if !errors.As(e, &re) {
			e = &RejectError{Code: CodeAuthRequired, Msg: "authentication failed", Err: e}
		}
		return &HookError{Plugin: p.Name(), Hook: "Authenticate", Err: e}
	}
	return nil
}

// CheckDial runs the DialCheckers on one resolved address.
func (c *Chain) CheckDial(s *Session, addr netip.AddrPort) error {
	if c == nil {
		return nil
	}
	for _, p := range c.dialChecks {
		if err := callDialCheck(p, s, addr); err != nil {
			return err
		}
	}
	return nil
}

func callDialCheck(p Plugin, s *Session, addr netip.AddrPort) (err error) {
	defer recoverHook(p, "OnDial", &err)
	if e := p.(DialChecker).OnDial(s, addr); e != nil {
		return &HookError{Plugin: p.Name(), Hook: "OnDial", Err: e}
	}
	return nil
}

// HasInterceptors reports whether some plugin may take over tunnels.
func (c *Chain) HasInterceptors() bool { return c != nil && len(c.intercepts) > 0 }

// Intercept runs the Interceptors on an open tunnel, in config order.
func (c *Chain) Intercept(ctx context.Context, s *Session, t *Tunnel) error {
	if c == nil {
		return nil
	}
	for _, p := range c.intercepts {
		if err := callIntercept(ctx, p, s, t); err != nil {
			return err
		}
	}
	return nil
}

func callIntercept(ctx context.Context, p Plugin, s *Session, t *Tunnel) (err error) {
	defer recoverHook(p, "Intercept", &err)
	return p.(Interceptor).Intercept(ctx, s, t)
}

// HTTPRequest runs the HTTPRequesters on a plain HTTP request.
func (c *Chain) HTTPRequest(s *Session, req *http.Request) error {
	if c == nil {
		return nil
	}
	for _, p := range c.httpReqs {
		if err := callHTTPRequest(p, s, req); err != nil {
			return err
		}
	}
	return nil
}

func callHTTPRequest(p Plugin, s *Session, req *http.Request) (err error) {
	defer recoverHook(p, "OnHTTPRequest", &err)
	if e := p.(HTTPRequester).OnHTTPRequest(s, req); e != nil {
		return &HookError{Plugin: p.Name(), Hook: "OnHTTPRequest", Err: e}
	}
	return nil
}

// HasHTTPResponders reports whether some plugin sees plain HTTP
// responses, so the forwarder builds a response view only then.
func (c *Chain) HasHTTPResponders() bool { return c != nil && len(c.httpResps) > 0 }

// HTTPResponse runs the HTTPResponders on a plain HTTP response head, in
// config order; the first error stops them.
func (c *Chain) HTTPResponse(s *Session, req *http.Request, resp *http.Response) error {
	if c == nil {
		return nil
	}
	for _, p := range c.httpResps {
		if err := callHTTPResponse(p, s, req, resp); err != nil {
			return err
		}
	}
	return nil
}

func callHTTPResponse(p Plugin, s *Session, req *http.Request, resp *http.Response) (err error) {
	defer recoverHook(p, "OnHTTPResponse", &err)
	if e := p.(HTTPResponder).OnHTTPResponse(s, req, resp); e != nil {
		return &HookError{Plugin: p.Name(), Hook: "OnHTTPResponse", Err: e}
	}
	return nil
}

// HasData reports whether any plugin sees or counts the data going d:
// whether a copy in user space must pass each chunk to Data.
func (c *Chain) HasData(d Direction) bool {
	return c != nil && (len(c.data[d]) > 0 || len(c.meters[d]) > 0)
}

// SeesData reports whether any plugin's data hooks read the bytes going
// d; a direction with only Meters may be spliced, with Meter called per
// chunk.
func (c *Chain) SeesData(d Direction) bool { return c != nil && len(c.data[d]) > 0 }

// MaxChunk is the largest chunk the data hooks may be handed (see
// ChunkLimiter); 0 sets no cap.
func (c *Chain) MaxChunk() int {
	if c == nil {
		return 0
	}
	return c.maxChunk
}

// HasMeters reports whether any Meter counts the bytes going d.
func (c *Chain) HasMeters(d Direction) bool { return c != nil && len(c.meters[d]) > 0 }

// HasReaders reports whether any plugin sees or counts client-to-upstream
// data: HasData(Up).
func (c *Chain) HasReaders() bool { return c.HasData(Up) }

// HasWriters reports whether any plugin sees or counts upstream-to-client
// data: HasData(Down).
func (c *Chain) HasWriters() bool { return c.HasData(Down) }

// Meter tells d's Meters that n bytes are about to go, and returns how
// many may (see Meter): each Meter is told what the earlier ones kept. A
// cut without an error is ErrClose; other errors come wrapped in a
// *HookError, as a panic does.
func (c *Chain) Meter(s *Session, d Direction, n int) (keep int, err error) {
	if c == nil {
		return n, nil
	}
	var cur *meterHook
	defer func() {
		if r := recover(); r != nil {
			keep = 0
			err = &HookError{Plugin: cur.p.Name(), Hook: "OnBytes", Err: fmt.Errorf("panic: %v", r), Stack: debug.Stack()}
		}
	}()
	keep = n
	for i := range c.meters[d] {
		cur = &c.meters[d][i]
		k, merr := cur.m.OnBytes(s, d, keep)
		keep = min(max(k, 0), keep)
		if merr != nil && merr != ErrClose {
			return keep, &HookError{Plugin: cur.p.Name(), Hook: "OnBytes", Err: merr}
		}
		if merr != nil || keep < n {
			return keep, ErrClose
		}
	}
	return keep, nil
}

// metered runs d's Meters over b, the output of its data hooks.
func (c *Chain) metered(s *Session, d Direction, b []byte) ([]byte, error) {
	if len(c.meters[d]) == 0 || len(b) == 0 {
		return b, nil
	}
	keep, err := c.Meter(s, d, len(b))
	return b[:keep], err
}

// recoverHook turns a panic in plugin p's hook into a *HookError in *err.
func recoverHook(p Plugin, hook string, err *error) {
	if r := recover(); r != nil {
		*err = &HookError{Plugin: p.Name(), Hook: hook, Err: fmt.Errorf("panic: %v", r), Stack: debug.Stack()}
	}
}

// Connect runs OnConnect hooks in order; the first error stops them. A
// plugin's *RejectError keeps its code; the error is wrapped in a
// *HookError naming the plugin.
func (c *Chain) Connect(ctx context.Context, s *Session) error {
	if c == nil {
		return nil
	}
	for _, p := range c.connectors {
		if err := callConnect(ctx, p, s); err != nil {
			return err
		}
	}
	return nil
}

func callConnect(ctx context.Context, p Plugin, s *Session) (err error) {
	defer recoverHook(p, "OnConnect", &err)
	if e := p.(Connector).OnConnect(ctx, s); e != nil {
		return &HookError{Plugin: p.Name(), Hook: "OnConnect", Err: e}
	}
	return nil
}

// Data passes a chunk going d through that direction's data hooks: for
// Up the Readers in config order, for Down the Writers in reverse order;
// then its Meters count what is left. A hook that returns nothing (it held
// or dropped the bytes) ends the pass: the later hooks see nothing of it.
// With ErrClose, out may hold bytes a Meter kept before cutting the
// stream: the caller delivers them, then ends the channel. With any other
// error out is empty.
func (c *Chain) Data(s *Session, d Direction, b []byte) (out []byte, err error) {
	if c == nil {
		return b, nil
	}
	if out, err = c.hooks(s, d, b); err != nil {
		return nil, err
	}
	return c.metered(s, d, out)
}

// hooks runs d's data hooks over b.
func (c *Chain) hooks(s *Session, d Direction, b []byte) (out []byte, err error) {
	hooks := c.data[d]
	var cur *dataHook
	defer func() {
		if r := recover(); r != nil {
			out = nil
			err = &HookError{Plugin: cur.p.Name(), Hook: hookNames[d].data, Err: fmt.Errorf("panic: %v", r), Stack: debug.Stack()}
		}
	}()
	for i := range hooks {
		cur = &hooks[i]
		if b, err = cur.data(s, b); err != nil {
			if err == ErrClose {
				return nil, err
			}
			return nil, &HookError{Plugin: cur.p.Name(), Hook: hookNames[d].data, Err: err}
		}
		if len(b) == 0 {
			// Held or dropped: later hooks see nothing of it.
			return b, nil
		}
	}
	return b, nil
}

// End ends the stream going d: each of that direction's hooks in turn
// gets what the earlier ones released, then, if it has an end hook
// (ReadEnder for Up, WriteEnder for Down), releases what it holds. The
// result, counted by the Meters, goes on toward d's receiver; errors are
// as Data's.
func (c *Chain) End(s *Session, d Direction) (out []byte, err error) {
	if c == nil {
		return nil, nil
	}
	if out, err = c.ends(s, d); err != nil {
		return nil, err
	}
	return c.metered(s, d, out)
}

// ends runs d's data hooks' end hooks.
func (c *Chain) ends(s *Session, d Direction) (out []byte, err error) {
	hooks := c.data[d]
	var cur *dataHook
	defer func() {
		if r := recover(); r != nil {
			out = nil
			err = &HookError{Plugin: cur.p.Name(), Hook: hookNames[d].end, Err: fmt.Errorf("panic: %v", r), Stack: debug.Stack()}
		}
	}()
	var pending []byte
	for i := range hooks {
		cur = &hooks[i]
		var extra []byte
		if len(pending) > 0 {
			pending, err = cur.data(s, pending)
		}
		if cur.end != nil && err == nil {
			extra, err = cur.end(s)
		}
		if err != nil {
			if err == ErrClose {
				return nil, err
			}
			return nil, &HookError{Plugin: cur.p.Name(), Hook: hookNames[d].end, Err: err}
		}
		pending = append(pending, extra...)
	}
	return pending, nil
}

// Read passes a client chunk through the Reader hooks: Data(s, Up, b).
func (c *Chain) Read(s *Session, b []byte) ([]byte, error) { return c.Data(s, Up, b) }

// Write passes an upstream chunk through the Writer hooks:
// Data(s, Down, b).
func (c *Chain) Write(s *Session, b []byte) ([]byte, error) { return c.Data(s, Down, b) }

// ReadEnd ends the client's stream: End(s, Up).
func (c *Chain) ReadEnd(s *Session) ([]byte, error) { return c.End(s, Up) }

// WriteEnd ends the upstream's stream: End(s, Down).
func (c *Chain) WriteEnd(s *Session) ([]byte, error) { return c.End(s, Down) }

// Close runs OnClose hooks in reverse config order. A panicking hook is
// reported through onPanic and does not stop the others.
func (c *Chain) Close(s *Session, st Stats, onPanic func(error)) {
	if c == nil {
		return
	}
	for _, p := range c.closers {
		if err := callClose(p, s, st); err != nil && onPanic != nil {
			onPanic(err)
		}
	}
}

func callClose(p Plugin, s *Session, st Stats) (err error) {
	defer recoverHook(p, "OnClose", &err)
	p.(Closer).OnClose(s, st)
	return nil
}
