package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"ferry/plugins"
	"ferry/plugins/pkg/httpbody"
)

// hookedBody is what hookBody made of a message body.
type hookedBody struct {
	// hooked: the hooks ran and body is what to send, whole, with the
	// header's Content-Length set to its size.
	hooked bool
	body   []byte
	// stream, when not hooked, yields the body exactly as it came: what
	// hookBody read of it, then the rest of the reader.
	stream io.Reader
}

// hookBody runs the chain's body hooks on m's body, read from r, when
// some hook wants it (plugins.HTTPBodyHook): it reads at most limit
// bytes, removes the Content-Encoding, calls the hooks, encodes the
// result again and sets Content-Length in m's header. A body nobody
// wants, one over limit (encoded or decoded, or declared so by its
// Content-Length, which is then not read at all), and one in an unknown
// encoding or that does not decode pass unchanged as stream. An error
// is a hook's refusal: the message is to be blocked.
func hookBody(chain *plugins.Chain, s *plugins.Session, m *plugins.HTTPMessage, r io.Reader, limit int64) (hookedBody, error) {
	ps := bodyHooksFor(chain, s, m, limit)
	if ps == nil {
		return hookedBody{stream: r}, nil
	}
	raw, err := readCapped(r, limit+1, declaredLength(m))
	if err != nil {
		return hookedBody{}, &bodyReadError{err: err}
	}
	if raw == nil {
		raw = []byte{} // nil out of hookWhole means "does not decode"
	}
	whole := func() hookedBody { return hookedBody{stream: io.MultiReader(bytes.NewReader(raw), r)} }
	if int64(len(raw)) > limit {
		s.Log.Debug().Int64("limit", limit).Msg("body hook skipped: body over max_buffered_body_bytes")
		return whole(), nil
	}
	out, changed, err := hookWhole(chain, s, m, ps, raw, limit)
	if err != nil {
		return hookedBody{}, err
	}
	if !changed && out == nil {
		return whole(), nil // did not decode
	}
	h := m.Header()
	h.Del("Transfer-Encoding")
	h.Set("Content-Length", strconv.Itoa(len(out)))
	return hookedBody{hooked: true, body: out}, nil
}

// hookReadCloser is hookBody for a net/http body: it returns the body to
// send, and hooked when that is the hooks' result, whole, whose length
// is then n (and the header's Content-Length); else the body as it came,
// of the length it had.
func hookReadCloser(chain *plugins.Chain, s *plugins.Session, m *plugins.HTTPMessage, body io.ReadCloser, limit int64) (_ io.ReadCloser, hooked bool, n int64, err error) {
	hb, err := hookBody(chain, s, m, body, limit)
	if err != nil {
		return body, false, 0, err
	}
	if !hb.hooked {
		return readCloser{Reader: hb.stream, Closer: body}, false, 0, nil
	}
	body.Close()
	return io.NopCloser(bytes.NewReader(hb.body)), true, int64(len(hb.body)), nil
}

// streamReadCloser passes a net/http body through the chain's
// HTTPBodyStreamers: when one replaced it, the length is unknown from
// then on (*length -1, no Content-Length field).
func streamReadCloser(chain *plugins.Chain, s *plugins.Session, m *plugins.HTTPMessage, body io.ReadCloser, length *int64) io.ReadCloser {
	if !chain.HasHTTPBodyStreamers() {
		return body
	}
	r, changed := chain.StreamHTTPBody(s, m, body)
	if !changed {
		return body
	}
	*length = -1
	m.Header().Del("Content-Length")
	return readCloser{Reader: r, Closer: body}
}

// readCapped reads r to its end or to n bytes, whichever comes first,
// into a buffer that grows as bytes come, to at most n (or the declared
// size, when known and smaller), so that the limit bounds what is held.
func readCapped(r io.Reader, n, declared int64) ([]byte, error) {
	grow := n
	if declared >= 0 && declared < n {
		grow = declared + 1 // one byte more tells a body longer than declared
	}
	var buf []byte
	chunk := make([]byte, 32<<10)
	for int64(len(buf)) < n {
		m, err := r.Read(chunk[:min(int64(len(chunk)), n-int64(len(buf)))])
		buf = appendCapped(buf, chunk[:m], int(grow))
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// bodyHooksFor returns the body hooks that want m's body, or nil when
// none does or when ferry could not give it to them: an unknown content
// coding, or a declared length over limit. It reads nothing.
func bodyHooksFor(chain *plugins.Chain, s *plugins.Session, m *plugins.HTTPMessage, limit int64) []plugins.Plugin {
	if !chain.HasHTTPBodyHooks() {
		return nil
	}
	ps := chain.WantsHTTPBody(s, m)
	if len(ps) == 0 {
		return nil
	}
	if enc := m.Header().Get("Content-Encoding"); !httpbody.Supported(enc) {
		s.Log.Debug().Str("content_encoding", enc).Msg("body hook skipped: unknown content coding")
		return nil
	}
	if n := declaredLength(m); n > limit {
		s.Log.Debug().Int64("limit", limit).Int64("length", n).Msg("body hook skipped: body over max_buffered_body_bytes")
		return nil
	}
	return ps
}

// declaredLength is the length m's view declares, -1 when unknown.
func declaredLength(m *plugins.HTTPMessage) int64 {
	switch {
	case m.Dir == plugins.Down && m.Response != nil:
		return m.Response.ContentLength
	case m.Dir == plugins.Up && m.Request != nil:
		return m.Request.ContentLength
	}
	return -1
}

// hookWhole runs the hooks ps on a whole body, raw, encoded as m's
// Content-Encoding says. It returns the body to send: raw itself
// (changed false) when the hooks kept the body and its coding, or when
// it does not decode within limit (out nil); else the hooks' result,
// encoded in the Content-Encoding m's header has after them.
func hookWhole(chain *plugins.Chain, s *plugins.Session, m *plugins.HTTPMessage, ps []plugins.Plugin, raw []byte, limit int64) (out []byte, changed bool, err error) {
	h := m.Header()
	enc := h.Get("Content-Encoding")
	plain, err := httpbody.Decode(enc, raw, limit)
	if err != nil {
		if errors.Is(err, httpbody.ErrTooLarge) {
			s.Log.Debug().Int64("limit", limit).Msg("body hook skipped: decoded body over max_buffered_body_bytes")
		} else {
			s.Log.Debug().Err(err).Msg("body hook skipped: body does not decode")
		}
		return nil, false, nil
	}
	out, err = chain.HTTPBody(s, m, ps, plain)
	if err != nil {
		return nil, false, err
	}
	after := h.Get("Content-Encoding")
	if after == enc && bytes.Equal(out, plain) {
		return raw, false, nil // unchanged: keep the origin's own encoding byte for byte
	}
	if len(httpbody.Codings(after)) > 0 {
		if out, err = httpbody.Encode(after, out); err != nil {
			return nil, false, fmt.Errorf("encode body for Content-Encoding %q: %w", after, err)
		}
	}
	if out == nil {
		out = []byte{}
	}
	return out, true, nil
}

// bodyReadError is a failure reading a body for the body hooks: the
// peer's side, not a hook's.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "read body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }
