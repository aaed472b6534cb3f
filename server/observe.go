package server

import (
	"errors"
	"os"
	"time"

	"ferry/config"
	"ferry/plugins"
	"ferry/relay/upstream"
)

// Observer is told about events worth counting: metrics. Its methods are
// called from connection goroutines, concurrently, and must not block;
// none is called per chunk of data.
type Observer interface {
	// ConnAccepted: listener accepted a TCP connection.
	ConnAccepted(listener string)
	// ConnRefused: listener closed a connection at once; reason is
	// "max_connections".
	ConnRefused(listener, reason string)
	// Handshake: a client's request on protocol ("http", "connect",
	// "socks5", "socks4", "tcp"; "unknown" before detection;
	// "proxy_protocol" for a PROXY header refused; "tls" for a TLS
	// listener's failed handshake) came to outcome: ok,
	// timeout, error, rejected or dial_failed.
	Handshake(protocol, outcome string)
	// Dialed: a dial through upstream ("direct" without one) took d;
	// result is ok, timeout, refused, unreachable or error.
	Dialed(upstream string, d time.Duration, result string)
	// ChannelClosed: a session (a tunnel, or one plain HTTP request) ended.
	ChannelClosed(e ChannelEnd)
}

// ChannelEnd describes a finished session for an Observer.
type ChannelEnd struct {
	Listener, Protocol string
	Reason             plugins.CloseReason
	Up, Down           int64
	// Plugin and Code are set when a plugin rejected the session: its
	// instance name and the client-facing code.
	Plugin string
	Code   plugins.Code
}

// SetObserver sets the Observer; call it before Start. nil means none.
func (s *Server) SetObserver(o Observer) {
	if o == nil {
		o = nopObserver{}
	}
	s.obs = o
}

type nopObserver struct{}

func (nopObserver) ConnAccepted(string)                  {}
func (nopObserver) ConnRefused(string, string)           {}
func (nopObserver) Handshake(string, string)             {}
func (nopObserver) Dialed(string, time.Duration, string) {}
func (nopObserver) ChannelClosed(ChannelEnd)             {}

// handshakeOutcome classifies the error that ended a request before its
// channel started (nil: ok).
func handshakeOutcome(err error) string {
	if err == nil {
		return "ok" // before the targets of errors.As, which escape
	}
	var de *dialError
	var re *plugins.RejectError
	var he *plugins.HookError
	switch {
	case errors.As(err, &de):
		return "dial_failed"
	case errors.As(err, &re), errors.As(err, &he):
		return "rejected"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	return "error"
}

// dialResult classifies a dial error for Observer.Dialed.
func dialResult(err error) string {
	if err == nil {
		return "ok"
	}
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Stage == upstream.StageAuth {
		return "auth_failed"
	}
	switch upstream.DialCode(err) {
	case plugins.CodeTimeout:
		return "timeout"
	case plugins.CodeConnRefused:
		return "refused"
	case plugins.CodeHostUnreachable, plugins.CodeNetUnreachable:
		return "unreachable"
	}
	return "error"
}

// upstreamName is the upstream label of a session's dial.
func upstreamName(s *plugins.Session) string {
	if s.Upstream == "" {
		return config.Direct
	}
	return s.Upstream
}
