package server

import "ferry/relay/upstream"

// UpstreamStatus is an upstream's state, for metrics and the admin API.
type UpstreamStatus = upstream.Status

// Upstreams returns the state of the current configuration's upstreams,
// by name.
func (s *Server) Upstreams() []UpstreamStatus {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	return g.ups.Status()
}
