package server

import (
	"fmt"
	"net"
	"net/http"

	"ferry/plugins"
	"ferry/relay"
)

// serveConnect serves a CONNECT stream (RFC 9113 section 8.5): a tunnel,
// and a session like an HTTP/1.1 CONNECT's. Its own goroutine carries
// it until the tunnel ends; the stream's flow control paces it, so one
// slow tunnel holds its stream only.
func (hc *h2Conn) serveConnect(w http.ResponseWriter, r *http.Request) {
	h := hc.h
	if r.Header.Get(":protocol") != "" {
		// Extended CONNECT (RFC 8441) asks the server to speak a protocol
		// (WebSocket) itself; a proxy only tunnels.
		h2Error(w, http.StatusNotImplemented, "extended CONNECT is not supported", nil, "")
		return
	}
	target := r.Host
	if host, port, err := net.SplitHostPort(target); err != nil || host == "" || port == "" {
		h2Error(w, http.StatusBadRequest, "CONNECT needs host:port", nil, "")
		return
	}
	sc := newStreamConn(w, r, h.c)
	sub := hc.sub(sc)
	s := sub.newSession("connect", target)
	s.Parent = hc.id
	s.Request = r
	st := &plugins.Stats{Start: sub.start}
	// The stream's context ends when the client resets the stream, which
	// abandons the dial: a rapid reset costs no target connection.
	up, info, err := sub.connect(r.Context(), s)
	h.l.srv.obs.Handshake(s.Protocol, handshakeOutcome(err))
	if err != nil {
		code := failCode(err)
		s.Status = code.HTTPStatus()
		h2Error(w, s.Status, code.String(), err, h.l.chain.Realm())
		st.Reason, st.Err = reasonFor(err), err
		h.l.finish(s, st)
		return
	}
	defer info.Release()
	s.Status = http.StatusOK
	w.WriteHeader(http.StatusOK)
	if err := sc.rc.Flush(); err != nil {
		// The stream is gone before the tunnel started: the client
		// reset it (RST_STREAM) or lost its connection. Either way the
		// target gets a reset too, as a reset in the tunnel would give
		// it (RFC 9113 section 8.5).
		relay.Abort(up)
		st.Reason, st.Err = plugins.ReasonClientReset, fmt.Errorf("reply to client: %w", err)
		h.l.finish(s, st)
		return
	}
	sub.relayStream(s, st, sc, up)
	h.l.finish(s, st)
	if sc.aborted.Load() {
		panic(http.ErrAbortHandler) // RST_STREAM, not an orderly END_STREAM
	}
}

// relayStream runs the tunnel's channel to its end.
func (h *conn) relayStream(s *plugins.Session, st *plugins.Stats, client, up net.Conn) {
	ctx := h.l.srv.hardCtx
	t, err := h.intercept(ctx, s, client, up, nil)
	if err != nil {
		st.Reason, st.Err = reasonFor(err), err
		return
	}
	if t.HTTP != "" {
		h.serveFlows(ctx, s, st, t)
		return
	}
	ch := &relay.Channel{
		Client:        t.Client,
		Upstream:      t.Upstream,
		Session:       s,
		Chain:         h.l.chain,
		Buffers:       h.l.buffers,
		ClientBuffers: h.l.h2Buffers,
		IdleTimeout:   h.l.set.IdleTimeout,
		ClientPending: t.ClientPending,
	}
	h.l.srv.track(s, ch)
	s.Request = nil // as for an HTTP/1.1 tunnel (see Session.Request)
	res := ch.Run(ctx)
	h.l.srv.untrack(s.ID)
	st.Up, st.Down, st.Reason, st.Err = res.Up, res.Down, res.Reason, res.Err
}

// h2Chunk bounds the buffers an HTTP/2 tunnel reads its client into.
// Unlike a socket, a stream cannot say it has data before it is read, so
// the copy from the client holds its buffer while the tunnel is idle.
// The way back reads the target's socket into buffer_size buffers, taken
// only once data is there.
const h2Chunk = 32 << 10

// h2Error answers a stream with status and a short text body, like
// writeHTTPError for HTTP/1 (and a Proxy-Authenticate challenge with a
// 407).
func h2Error(w http.ResponseWriter, status int, msg string, cause error, realm string) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	if status == http.StatusProxyAuthRequired {
		hdr.Set("Proxy-Authenticate", proxyChallenge(realm))
	}
	w.WriteHeader(status)
	w.Write([]byte(errorBody(status, msg, cause)))
}
