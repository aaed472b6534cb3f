// Package state keeps the counters that limits and quotas need to outlive
// a process and, with Redis, to be shared by every ferry of a fleet: bytes
// used by a user, a group or a client address in a period.
//
//	b, err := state.OpenBolt("/var/lib/ferry/state") // or state.OpenRedis(url)
//	st := state.New(state.Config{Backend: b, Log: log})
//	defer st.Close(ctx)                                // flushes what is pending
//	c, err := st.Counter(ctx, state.Key{Scope: "quota/daily", Subject: "user:alice", End: end.Unix()}, end)
//	total := c.Add(int64(len(chunk)))                  // an atomic add: no I/O
//
// A Store is the one thing plugins use: it hands out Counters, kept in
// memory and added to with atomics, and a goroutine flushes what they
// gathered to the Backend in batches (every FlushEvery, sooner when one
// counter gathered FlushBytes), so the data path never waits on a disk or
// a network. Backends are the embedded bbolt file (OpenBolt, the default:
// no server, survives restarts) and Redis (OpenRedis: INCRBY and EXPIREAT,
// shared; standalone or behind Sentinel). When the backend fails, the Store keeps counting in memory
// (bounded by MaxCounters), warns at most once a second, counts the
// failures and flushes everything once the backend answers again; what a
// plugin does meanwhile is OnError's choice (FailOpen or FailClosed).
//
// The package does not decide what a period is (the quota plugin does:
// a key names its period's end) and does not know users or limits.
//
// Beside usage, two things a fleet shares, each an interface a Backend
// may implement and reached through Store methods:
//
//   - Leases (Leaser, Store.Lease): concurrent things (connlimit's open
//     channels) counted across instances. Redis keeps a sorted set per key
//     (member: this process's random id and a sequence number; score: the
//     expiry), and a Lua script drops expired members, counts and adds
//     under the limit at once; the Store refreshes its live leases every
//     third of LeaseTime in one script call, so that the slots of an
//     instance that dies free within LeaseTime. Without a Leaser (the
//     embedded file) leases count in the process.
//   - Shared token buckets (Rater, Store.Bucket): bandwidth. Redis runs
//     a GCRA reservation script; a Bucket takes 100 ms of the rate at a
//     time, never a call per chunk. Without a Rater a Bucket lets
//     everything through (the caller's own limiter does the job).
//
// Both report backend failures like the counters do (a warning at most
// once a second, Errors) and leave OnError to the caller. Their keys
// have prefixes of their own (ferry:lease:, ferry:rate:) next to
// keyPrefix.
package state

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Key names one usage counter: what it limits (Scope, such as
// "quota/daily"), whom (Subject, such as "user:alice") and the period it
// counts (End, the period's end in Unix seconds; a rolling window's
// bucket names its own end).
type Key struct {
	Scope   string
	Subject string
	End     int64
}

// Delta is an amount to add to a counter, which expires (is forgotten by
// the backend) at Expires.
type Delta struct {
	Key     Key
	N       int64
	Expires time.Time
}

// Entry is a counter as the backend holds it.
type Entry struct {
	Key   Key
	Total int64
}

// Backend is where counters persist. Implementations are safe for
// concurrent use; the Store calls them from its flusher and from
// Counter, Entries and Reset.
type Backend interface {
	// Add adds each delta to its counter (creating it, expiring at the
	// delta's Expires) and returns the new totals, in order.
	Add(ctx context.Context, ds []Delta) ([]int64, error)
	// Get returns the totals of keys, 0 for one it does not hold.
	Get(ctx context.Context, keys []Key) ([]int64, error)
	// List returns the live counters whose Scope starts with prefix, at
	// most limit of them.
	List(ctx context.Context, prefix string, limit int) ([]Entry, error)
	// Delete removes the counters of subject whose Scope starts with
	// prefix and says how many it removed.
	Delete(ctx context.Context, prefix, subject string) (int, error)
	// Shared reports whether other processes change the counters too, so
	// that the Store must read them again now and then.
	Shared() bool
	Close() error
}

// ErrFull is returned by Counter when the Store holds MaxCounters counters
// and none can be let go.
var ErrFull = errors.New("state: too many counters")

// OnError is what a plugin does while the backend is unreachable.
type OnError uint8

const (
	// FailOpen lets traffic through, counted in memory until the backend
	// is back.
	FailOpen OnError = iota
	// FailClosed refuses what cannot be checked.
	FailClosed
)

// ParseOnError reads "fail_open" or "fail_closed".
func ParseOnError(s string) (OnError, error) {
	switch s {
	case "fail_open", "":
		return FailOpen, nil
	case "fail_closed":
		return FailClosed, nil
	}
	return FailOpen, errors.New(`must be "fail_open" or "fail_closed"`)
}

// keyPrefix starts every key ferry writes to a shared Redis.
const keyPrefix = "ferry:usage:"

// encode makes the backend's key of k: its parts query-escaped, so that a
// ':' in a subject (an IPv6 client) or a glob character cannot be taken
// for a separator or a Redis SCAN pattern.
func encode(k Key) string {
	return keyPrefix + url.QueryEscape(k.Scope) + ":" + url.QueryEscape(k.Subject) + ":" + strconv.FormatInt(k.End, 10)
}

// decode is encode's inverse; ok is false for a key ferry did not write.
func decode(s string) (k Key, ok bool) {
	rest, found := strings.CutPrefix(s, keyPrefix)
	if !found {
		return k, false
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 {
		return k, false
	}
	var err1, err2, err3 error
	k.Scope, err1 = url.QueryUnescape(parts[0])
	k.Subject, err2 = url.QueryUnescape(parts[1])
	k.End, err3 = strconv.ParseInt(parts[2], 10, 64)
	return k, err1 == nil && err2 == nil && err3 == nil
}
