package server

import (
	"context"
	"errors"
	"fmt"

	"ferry/plugins"
)

// Usage collects the usage that the current configuration's plugin
// instances keep (plugins.UsageReporter, the quota plugin), for the admin
// service. An instance whose store failed gives what it could, and its
// error is returned with the rest.
func (s *Server) Usage(ctx context.Context) ([]plugins.Usage, error) {
	var out []plugins.Usage
	var errs []error
	for _, r := range s.usageReporters() {
		us, err := r.Usage(ctx)
		out = append(out, us...)
		if err != nil {
			errs = append(errs, fmt.Errorf("usage of %s: %w", r.(plugins.Plugin).Name(), err))
		}
	}
	return out, errors.Join(errs...)
}

// ResetUsage forgets subject's usage ("user:alice") in every instance
// that keeps usage, and says how many counters went.
func (s *Server) ResetUsage(ctx context.Context, subject string) (int, error) {
	n := 0
	var errs []error
	for _, r := range s.usageReporters() {
		k, err := r.ResetUsage(ctx, subject)
		n += k
		if err != nil {
			errs = append(errs, fmt.Errorf("reset usage of %s: %w", r.(plugins.Plugin).Name(), err))
		}
	}
	return n, errors.Join(errs...)
}

func (s *Server) usageReporters() []plugins.UsageReporter {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	var out []plugins.UsageReporter
	for _, p := range g.instances {
		if r, ok := p.(plugins.UsageReporter); ok {
			out = append(out, r)
		}
	}
	return out
}

// StateStatus is the health of one open [state] store.
type StateStatus struct {
	Location string
	Healthy  bool
	// Errors counts failed calls to the store since it opened.
	Errors uint64
}

// StateStores reports the open [state] stores.
func (s *Server) StateStores() []StateStatus {
	s.stores.mu.Lock()
	defer s.stores.mu.Unlock()
	var out []StateStatus
	for _, h := range s.stores.open {
		out = append(out, StateStatus{Location: h.name, Healthy: h.st.Healthy(), Errors: h.st.Errors()})
	}
	return out
}
