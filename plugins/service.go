package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Service is a named component shared by plugins (a log file, a counter
// store, a connection pool). The server starts every provided service
// before it opens listeners and stops them, in reverse order, after the
// last channel has ended.
type Service interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Services is one server's set of services. Safe for concurrent use.
type Services struct {
	mu      sync.Mutex
	byName  map[string]Service
	order   []string
	started int
}

// NewServices returns an empty set.
func NewServices() *Services {
	return &Services{byName: make(map[string]Service)}
}

// Provide returns the service called name, creating it with create the
// first time: plugin instances that provide the same name share one.
func (s *Services) Provide(name string, create func() (Service, error)) (Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if svc, ok := s.byName[name]; ok {
		return svc, nil
	}
	svc, err := create()
	if err != nil {
		return nil, fmt.Errorf("create service %s: %w", name, err)
	}
	s.byName[name] = svc
	s.order = append(s.order, name)
	return svc, nil
}

// Lookup returns the service called name.
func (s *Services) Lookup(name string) (Service, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.byName[name]
	return svc, ok
}

// Start starts services in the order they were provided. If one fails,
// those already started are stopped and the error returned.
func (s *Services) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ; s.started < len(s.order); s.started++ {
		name := s.order[s.started]
		if err := s.byName[name].Start(ctx); err != nil {
			err = fmt.Errorf("start service %s: %w", name, err)
			return errors.Join(err, s.stopLocked(ctx))
		}
	}
	return nil
}

// Stop stops started services in reverse order and returns their errors
// joined.
func (s *Services) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(ctx)
}

func (s *Services) stopLocked(ctx context.Context) error {
	var errs []error
	for s.started > 0 {
		s.started--
		name := s.order[s.started]
		if err := s.byName[name].Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop service %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
