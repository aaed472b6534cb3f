package state

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
)

// Redis is the shared backend: each counter a Redis string, added to
// with INCRBY and given its expiry with EXPIREAT (both in one pipeline
// per batch), so that a period's counters vanish when it ends.
type Redis struct {
	c redis.UniversalClient
}

var _ Backend = (*Redis)(nil)

// redisTimeout bounds dials, reads and writes of the client.
const redisTimeout = 2 * time.Second

// OpenRedis makes a client for rawURL: redis://[user:pass@]host:port/db,
// rediss:// for TLS, or redis+sentinel://[user:pass@]host:port[,host:port...]/master[/db]
// for a master that Redis Sentinels name (the credentials are the
// master's). It does not connect yet: the first call does, so a Redis
// that is down at start is a failure like any other (OnError).
func OpenRedis(rawURL string) (*Redis, error) {
	// go-redis prints each failed dial to stderr, unthrottled and not in
	// ferry's log format: a Redis that is down would flood the log with
	// a line per call. The Store reports failures itself, at most once
	// a second (see Store.failed), so the library's own lines go.
	redis.SetLogger(&logging.VoidLogger{})
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	if u.Scheme == "redis+sentinel" {
		return openSentinel(u)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("redis url scheme %q: want redis, rediss or redis+sentinel", u.Scheme)
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = redisTimeout, redisTimeout, redisTimeout
	// A small pool: ferry's calls are batched, a few a second.
	opt.PoolSize = 4
	opt.MaxRetries = 1
	return &Redis{c: redis.NewClient(opt)}, nil
}

// openSentinel makes a failover client: it asks the Sentinels for the
// master and follows it when they fail over.
func openSentinel(u *url.URL) (*Redis, error) {
	master, db, err := SentinelPath(u.Path)
	if err != nil {
		return nil, err
	}
	opt := &redis.FailoverOptions{
		MasterName:    master,
		SentinelAddrs: strings.Split(u.Host, ","),
		DB:            db,
		Username:      u.User.Username(),
		DialTimeout:   redisTimeout, ReadTimeout: redisTimeout, WriteTimeout: redisTimeout,
		PoolSize: 4, MaxRetries: 1,
	}
	opt.Password, _ = u.User.Password()
	return &Redis{c: redis.NewFailoverClient(opt)}, nil
}

// SentinelPath reads "/master[/db]", the path of a redis+sentinel URL.
func SentinelPath(p string) (master string, db int, err error) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if parts[0] == "" || len(parts) > 2 {
		return "", 0, errors.New(`want the master's name and an optional database in the path, like "/mymaster/0"`)
	}
	if len(parts) == 2 {
		if db, err = strconv.Atoi(parts[1]); err != nil || db < 0 {
			return "", 0, fmt.Errorf("database %q: want a number", parts[1])
		}
	}
	return parts[0], db, nil
}

// Add implements Backend.
func (r *Redis) Add(ctx context.Context, ds []Delta) ([]int64, error) {
	pipe := r.c.Pipeline()
	incrs := make([]*redis.IntCmd, len(ds))
	for i, d := range ds {
		k := encode(d.Key)
		incrs[i] = pipe.IncrBy(ctx, k, d.N)
		pipe.ExpireAt(ctx, k, d.Expires)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redis incrby: %w", err)
	}
	out := make([]int64, len(ds))
	for i, c := range incrs {
		out[i] = c.Val()
	}
	return out, nil
}

// Get implements Backend: one MGET.
func (r *Redis) Get(ctx context.Context, keys []Key) ([]int64, error) {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = encode(k)
	}
	vals, err := r.c.MGet(ctx, names...).Result()
	if err != nil {
		return nil, fmt.Errorf("redis mget: %w", err)
	}
	return totals(vals), nil
}

// totals reads MGET's answers; a missing or foreign value is 0.
func totals(vals []any) []int64 {
	out := make([]int64, len(vals))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return out
}

// scanPattern matches the keys of counters whose Scope starts with prefix
// (and, when subject is not empty, whose Subject is subject). The parts are
// query-escaped, which leaves no glob character in them.
func scanPattern(prefix, subject string) string {
	p := keyPrefix + url.QueryEscape(prefix) + "*:"
	if subject != "" {
		return p + url.QueryEscape(subject) + ":*"
	}
	return p + "*"
}

// scan collects up to limit keys matching pattern, whose decoded form
// passes keep.
func (r *Redis) scan(ctx context.Context, pattern string, limit int, keep func(Key) bool) ([]string, []Key, error) {
	var names []string
	var keys []Key
	it := r.c.Scan(ctx, 0, pattern, 1000).Iterator()
	for it.Next(ctx) && len(names) < limit {
		k, ok := decode(it.Val())
		if ok && keep(k) {
			names = append(names, it.Val())
			keys = append(keys, k)
		}
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("redis scan: %w", err)
	}
	return names, keys, nil
}

// List implements Backend: SCAN, then MGET in batches.
func (r *Redis) List(ctx context.Context, prefix string, limit int) ([]Entry, error) {
	names, keys, err := r.scan(ctx, scanPattern(prefix, ""), limit, func(k Key) bool {
		return strings.HasPrefix(k.Scope, prefix)
	})
	if err != nil {
		return nil, err
	}
	var out []Entry
	for len(names) > 0 {
		n := min(len(names), maxBatch)
		vals, err := r.c.MGet(ctx, names[:n]...).Result()
		if err != nil {
			return nil, fmt.Errorf("redis mget: %w", err)
		}
		for i, t := range totals(vals) {
			if vals[i] != nil {
				out = append(out, Entry{Key: keys[i], Total: t})
			}
		}
		names, keys = names[n:], keys[n:]
	}
	return out, nil
}

// Delete implements Backend.
func (r *Redis) Delete(ctx context.Context, prefix, subject string) (int, error) {
	names, _, err := r.scan(ctx, scanPattern(prefix, subject), maxBatch*100, func(k Key) bool {
		return k.Subject == subject && strings.HasPrefix(k.Scope, prefix)
	})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for len(names) > 0 {
		n := min(len(names), maxBatch)
		d, err := r.c.Del(ctx, names[:n]...).Result()
		if err != nil {
			return deleted, fmt.Errorf("redis del: %w", err)
		}
		deleted += int(d)
		names = names[n:]
	}
	return deleted, nil
}

// Shared implements Backend.
func (r *Redis) Shared() bool { return true }

// Close implements Backend.
func (r *Redis) Close() error {
	if err := r.c.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return err
	}
	return nil
}

var _ Leaser = (*Redis)(nil)

// acquireScript drops the expired members of a lease set (score: expiry
// in Unix milliseconds, of Redis's clock, so that the clocks of the
// ferrys do not matter), counts the rest and adds the member when under
// the limit, all at once: Redis runs a script atomically, so two ferrys
// cannot both take the last slot. The set itself expires with its
// longest lease. KEYS[1] the set; ARGV: member, limit, ttl ms.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return {0, n} end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, n + 1}
`)

// refreshScript sets the expiry of each member ARGV[i+1] of set KEYS[i]
// to Redis's now plus ARGV[1] ms, adding it again if it was lost.
var refreshScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  redis.call('ZADD', k, now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', k, ttl)
end
return #KEYS
`)

// Acquire implements Leaser.
func (r *Redis) Acquire(ctx context.Context, key, member string, limit int, ttl time.Duration) (bool, int, error) {
	res, err := acquireScript.Run(ctx, r.c, []string{key}, member, limit, ttl.Milliseconds()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("redis lease: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("redis lease: script answered %d values", len(res))
	}
	return res[0] == 1, int(res[1]), nil
}

// Refresh implements Leaser: one script call for all of ls.
func (r *Redis) Refresh(ctx context.Context, ls []LeaseRef, ttl time.Duration) error {
	if len(ls) == 0 {
		return nil
	}
	keys := make([]string, len(ls))
	args := make([]any, 1, len(ls)+1)
	args[0] = ttl.Milliseconds()
	for i, l := range ls {
		keys[i] = l.Key
		args = append(args, l.Member)
	}
	if err := refreshScript.Run(ctx, r.c, keys, args...).Err(); err != nil {
		return fmt.Errorf("redis lease refresh: %w", err)
	}
	return nil
}

// Release implements Leaser.
func (r *Redis) Release(ctx context.Context, key, member string) error {
	if err := r.c.ZRem(ctx, key, member).Err(); err != nil {
		return fmt.Errorf("redis lease release: %w", err)
	}
	return nil
}

var _ Rater = (*Redis)(nil)

// reserveScript is a GCRA reservation (the generic cell rate algorithm
// of ATM, as in go-redis/redis_rate, but one that always grants and says
// how long to wait, like golang.org/x/time/rate's Reserve, so that a
// ferry sleeps once rather than polling). Times are Redis's, in
// microseconds: the clocks of the ferrys do not matter. The key holds
// the theoretical arrival time and expires once the bucket is full
// again. KEYS[1] the bucket; ARGV: rate (tokens/s), burst, n.
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local per = 1000000 / tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new = tat + tonumber(ARGV[3]) * per
local wait = new - tonumber(ARGV[2]) * per - now
if wait < 0 then wait = 0 end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.floor((new - now) / 1000) + 1000)
return math.floor(wait)
`)

// Reserve implements Rater: one script call.
func (r *Redis) Reserve(ctx context.Context, key string, rate float64, burst, n int64) (time.Duration, error) {
	us, err := reserveScript.Run(ctx, r.c, []string{key}, rate, burst, n).Int64()
	if err != nil {
		return 0, fmt.Errorf("redis reserve: %w", err)
	}
	return time.Duration(us) * time.Microsecond, nil
}
