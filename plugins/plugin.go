// Package plugins is ferry's extension contract and the registry of
// compiled-in plugin types.
//
// A plugin type registers a factory from init():
//
//	func init() {
//		plugins.Register(plugins.Registration{
//			Type:        "deny-port",
//			Description: "rejects targets on listed ports",
//			New: func(env plugins.Env) (plugins.Plugin, error) {
//				var cfg struct{ Ports []int `toml:"ports"` }
//				if err := env.Decode(&cfg); err != nil {
//					return nil, err
//				}
//				return &denyPort{ports: cfg.Ports}, nil
//			},
//		})
//	}
//
// The factory runs once per [[plugin]] table; the instance it returns serves
// every channel of every listener that names it, concurrently. An instance
// implements Plugin and any of the hook interfaces (Connector, Reader,
// Writer, Closer, io.Closer); the relay asks which ones once, when it builds
// a Chain, never per chunk. Per-channel state belongs in the Session
// (Session.Value/SetValue), not in the plugin.
//
// This package does not dial, listen or copy: server and relay drive it.
package plugins

import (
	"context"
	"time"
)

// Plugin is the one method every plugin has.
type Plugin interface {
	// Name is the instance name from the config, used in logs and errors.
	Name() string
}

// Connector sees a channel before its target is dialed. It may rewrite
// s.Target, set s.Upstream, or reject by returning an error; a *RejectError
// (see Reject) chooses what the client is told, any other error is a 502 /
// SOCKS general failure. Hooks run in config order; the first error stops
// the chain.
type Connector interface {
	OnConnect(ctx context.Context, s *Session) error
}

// Reader sees each chunk read from the client before it goes upstream, in
// config order. It returns the bytes to pass on: p itself, a modified or
// new slice, or an empty one to hold or drop them (a hook that holds bytes
// releases them by returning them with a later chunk, or by
// Session.SendUpstream). p is only valid during the call: a hook that keeps
// bytes must copy them. Returning an error ends the channel; ErrClose ends
// it without logging an error.
type Reader interface {
	OnRead(s *Session, p []byte) ([]byte, error)
}

// Writer is Reader for the way back: chunks read from the upstream before
// they reach the client, in reverse config order.
type Writer interface {
	OnWrite(s *Session, p []byte) ([]byte, error)
}

// Closer sees a channel end, once, after both sides are closed, in reverse
// config order (like defers). It also runs for channels that a Connector
// rejected or whose dial failed.
type Closer interface {
	OnClose(s *Session, st Stats)
}

// Stats describe a finished channel.
type Stats struct {
	// Up counts bytes delivered to the upstream, Down bytes delivered to the
	// client, after plugin hooks.
	Up, Down int64
	Start    time.Time
	Duration time.Duration
	Reason   CloseReason
	// Err is the error behind Reason, if any (nil for orderly closes).
	Err error
}
