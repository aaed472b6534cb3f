package server

import (
	"errors"
	"time"

	"ferry/plugins"
)

// finish completes a session: close hooks, then one error line for
// failures of ferry or a plugin (the access line is the log plugin's).
func (l *frontend) finish(s *plugins.Session, st *plugins.Stats) {
	st.Duration = time.Since(st.Start)
	// Metrics first: whoever reads the access line (an operator, a test)
	// then finds the channel counted too.
	end := ChannelEnd{Listener: s.Listener, Protocol: s.Protocol, Reason: st.Reason, Up: st.Up, Down: st.Down}
	if st.Err != nil && st.Reason == plugins.ReasonRejected {
		end.Plugin, end.Code = rejectedBy(st.Err)
	}
	l.srv.obs.ChannelClosed(end)
	l.chain.Close(s, *st, func(err error) {
		s.Log.Error().Err(err).Msg("plugin panicked in OnClose")
	})
	if st.Err == nil {
		return
	}
	var he *plugins.HookError
	if errors.As(st.Err, &he) && st.Reason != plugins.ReasonRejected {
		ev := s.Log.Error().Err(st.Err).Str("plugin", he.Plugin)
		if he.Stack != nil {
			ev = ev.Bytes("stack", he.Stack)
		}
		ev.Msg("channel ended by plugin failure")
	}
}

// rejectedBy names the plugin that rejected a session and the code it
// gave; a function of its own so that the HookError variable, which
// escapes, is allocated only on this uncommon path.
func rejectedBy(err error) (plugin string, code plugins.Code) {
	var he *plugins.HookError
	if errors.As(err, &he) {
		return he.Plugin, plugins.CodeOf(err)
	}
	return "", 0
}
