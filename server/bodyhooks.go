package server

import (
	"bytes"
	"errors"
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
// wants, one over limit (encoded or decoded), and one in an unknown
// encoding or that does not decode pass unchanged as stream. An error
// is a hook's refusal: the message is to be blocked.
func hookBody(chain *plugins.Chain, s *plugins.Session, m *plugins.HTTPMessage, r io.Reader, limit int64) (hookedBody, error) {
	ps := chain.WantsHTTPBody(s, m)
	if len(ps) == 0 {
		return hookedBody{stream: r}, nil
	}
	h := m.Header()
	enc := h.Get("Content-Encoding")
	if !httpbody.Supported(enc) {
		s.Log.Debug().Str("content_encoding", enc).Msg("body hook skipped: unknown content coding")
		return hookedBody{stream: r}, nil
	}
	raw, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return hookedBody{}, &bodyReadError{err: err}
	}
	whole := func() hookedBody { return hookedBody{stream: io.MultiReader(bytes.NewReader(raw), r)} }
	if int64(len(raw)) > limit {
		s.Log.Debug().Int64("limit", limit).Msg("body hook skipped: body over max_buffered_body_bytes")
		return whole(), nil
	}
	plain, err := httpbody.Decode(enc, raw, limit)
	if err != nil {
		if !errors.Is(err, httpbody.ErrTooLarge) {
			s.Log.Debug().Err(err).Msg("body hook skipped: body does not decode")
		}
		return whole(), nil
	}
	out, err := chain.HTTPBody(s, m, ps, plain)
	if err != nil {
		return hookedBody{}, err
	}
	if enc := h.Get("Content-Encoding"); enc != "" && !bytes.Equal(out, plain) {
		if out, err = httpbody.Encode(enc, out); err != nil {
			return hookedBody{}, err
		}
	} else if bytes.Equal(out, plain) {
		out = raw // unchanged: keep the origin's own encoding byte for byte
	}
	h.Del("Transfer-Encoding")
	h.Set("Content-Length", strconv.Itoa(len(out)))
	return hookedBody{hooked: true, body: out}, nil
}

// bodyReadError is a failure reading a body for the body hooks: the
// peer's side, not a hook's.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "read body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }
