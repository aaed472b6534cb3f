package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"io"
	"net/netip"
	"sync"
	"time"
)

// cacheSize bounds the successful checks remembered: enough for every
// active user of a proxy, each with a password or two.
const cacheSize = 1024

// cache remembers credentials that passed a bcrypt check, so a known user
// pays bcrypt once, not on every connection. It stores no password: an
// entry's key is HMAC-SHA256(user, password, hash) under a key drawn at
// start, so a memory dump does not give a fast hash to brute-force either.
// Because the user's hash is in the key, a changed hash misses by itself;
// retain also drops such entries on reload to free their room.
//
// It keeps two generations: hits in the old one move to the current one,
// and when the current one is full it becomes the old one and the oldest
// are dropped. That bounds it at max entries, close to LRU, in a few lines.
type cache struct {
	max int // entries in both generations together
	key [32]byte

	mu       sync.Mutex
	cur, old map[[32]byte]cached
}

// cached is what an entry is about, to drop it when the user changes.
type cached struct {
	user string
	hash string
}

func newCache(size int) *cache {
	c := &cache{max: size, cur: make(map[[32]byte]cached), old: make(map[[32]byte]cached)}
	rand.Read(c.key[:])
	return c
}

// sum is the entry key of user, password and hash. Each field is length
// prefixed so that no two triples share an input.
func (c *cache) sum(user, password string, bhash []byte) [32]byte {
	m := hmac.New(sha256.New, c.key[:])
	field := func(h hash.Hash, b string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		io.WriteString(h, b)
	}
	field(m, user)
	field(m, password)
	field(m, string(bhash))
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// hit reports whether k passed a check before. The map lookup is not
// constant-time, but k is an HMAC under a secret key: its timing tells a
// client nothing it could steer toward a password.
func (c *cache) hit(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[k]; ok {
		return true
	}
	v, ok := c.old[k]
	if ok {
		delete(c.old, k)
		c.putLocked(k, v)
	}
	return ok
}

// add remembers that k, for user with hash, passed.
func (c *cache) add(k [32]byte, user string, hash []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, cached{user: user, hash: string(hash)})
}

func (c *cache) putLocked(k [32]byte, v cached) {
	if len(c.cur) >= c.max/2 {
		c.old, c.cur = c.cur, make(map[[32]byte]cached, c.max/2)
	}
	c.cur[k] = v
}

// retain drops the entries of users whose hash is no longer hash(user).
func (c *cache) retain(hash func(user string) ([]byte, bool)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range []map[[32]byte]cached{c.cur, c.old} {
		for k, v := range m {
			if h, ok := hash(v.user); !ok || string(h) != v.hash {
				delete(m, k)
			}
		}
	}
}

// deniedKey is the negative cache's key of a refusal: k (cache.sum of
// user, password and hash) from the client address ip, counted like the
// throttle counts it (an IPv6 /64). The address is part of the key so
// that a refusal remembered for one client is never answered faster to
// another: else a fast refusal would tell an attacker that someone else
// (a user's device with its old password, say) tried that password.
func (c *cache) deniedKey(k [32]byte, ip netip.Addr) [32]byte {
	m := hmac.New(sha256.New, c.key[:])
	m.Write(k[:])
	if ip.IsValid() {
		a := key(ip).As16()
		m.Write(a[:])
	}
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// defaultDeniedTTL is how long the htpasswd backend remembers a refusal:
// longer than a remote backend's (defaultNegativeTTL), since its
// refusals cannot go stale (see denials).
const defaultDeniedTTL = time.Minute

// denials is the htpasswd backend's negative cache: refusals after a
// bcrypt check, by deniedKey, for ttl. A refusal cannot go stale: the
// user's hash is in the key, so a changed password, or a user added
// since, misses by itself; ttl only bounds how long an entry holds its
// room. Bounded by gens, like a remote backend's results. A nil
// *denials remembers nothing (negative_cache_ttl = "0s").
type denials struct {
	ttl time.Duration
	m   *gens[[32]byte, time.Time] // when each was refused
}

func newDenials(ttl time.Duration) *denials {
	if ttl <= 0 {
		return nil
	}
	return &denials{ttl: ttl, m: newGens[[32]byte, time.Time](cacheSize * 4)}
}

// hit reports whether k was refused within the ttl before now.
func (d *denials) hit(k [32]byte, now time.Time) bool {
	if d == nil {
		return false
	}
	at, ok := d.m.get(k)
	return ok && now.Sub(at) < d.ttl
}

// add remembers that k was refused at now.
func (d *denials) add(k [32]byte, now time.Time) {
	if d != nil {
		d.m.put(k, now)
	}
}

// len counts the entries.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}
