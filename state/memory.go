package state

import (
	"context"
	"strings"
	"sync"
	"time"
)

// Memory is a backend that forgets everything with the process: for
// `ferry check`, which must not take the embedded file's lock, and tests.
type Memory struct {
	mu sync.Mutex
	m  map[Key]memEntry
	// Fail, when set, makes every call fail with it (tests).
	Fail error
}

type memEntry struct {
	total   int64
	expires time.Time
}

var _ Backend = (*Memory)(nil)

// NewMemory returns an empty Memory backend.
func NewMemory() *Memory { return &Memory{m: make(map[Key]memEntry)} }

// SetFail makes later calls fail with err (nil: work again).
func (m *Memory) SetFail(err error) {
	m.mu.Lock()
	m.Fail = err
	m.mu.Unlock()
}

// Add implements Backend.
func (m *Memory) Add(_ context.Context, ds []Delta) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return nil, m.Fail
	}
	now := time.Now()
	out := make([]int64, len(ds))
	for i, d := range ds {
		e := m.m[d.Key]
		if !now.Before(e.expires) {
			e.total = 0
		}
		e.total += d.N
		e.expires = d.Expires
		m.m[d.Key] = e
		out[i] = e.total
	}
	return out, nil
}

// Get implements Backend.
func (m *Memory) Get(_ context.Context, keys []Key) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return nil, m.Fail
	}
	now := time.Now()
	out := make([]int64, len(keys))
	for i, k := range keys {
		if e, ok := m.m[k]; ok && now.Before(e.expires) {
			out[i] = e.total
		}
	}
	return out, nil
}

// List implements Backend.
func (m *Memory) List(_ context.Context, prefix string, limit int) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return nil, m.Fail
	}
	now := time.Now()
	var out []Entry
	for k, e := range m.m {
		if strings.HasPrefix(k.Scope, prefix) && now.Before(e.expires) && len(out) < limit {
			out = append(out, Entry{Key: k, Total: e.total})
		}
	}
	return out, nil
}

// Delete implements Backend.
func (m *Memory) Delete(_ context.Context, prefix, subject string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return 0, m.Fail
	}
	n := 0
	for k := range m.m {
		if k.Subject == subject && strings.HasPrefix(k.Scope, prefix) {
			delete(m.m, k)
			n++
		}
	}
	return n, nil
}

// Shared implements Backend.
func (m *Memory) Shared() bool { return false }

// Close implements Backend.
func (m *Memory) Close() error { return nil }
