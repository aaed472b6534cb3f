package upstream

import (
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"

	"ferry/config"
)

// sourcePool is a route's source_address: the local addresses its dials
// leave from and how one is picked for a session. The zero pool (no
// addresses) picks none: the kernel chooses.
type sourcePool struct {
	addrs    []netip.Addr
	strategy string
	next     atomic.Uint64 // round-robin's counter
}

func newSourcePool(addrs []netip.Addr, strategy string) *sourcePool {
	if len(addrs) == 0 {
		return nil
	}
	if strategy == "" {
		strategy = config.SourceSticky
	}
	return &sourcePool{addrs: addrs, strategy: strategy}
}

// pick returns the address for a session whose sticky key is key (the
// user name, or the client address without one). A nil pool returns the
// zero Addr.
func (p *sourcePool) pick(key string) netip.Addr {
	if p == nil {
		return netip.Addr{}
	}
	if len(p.addrs) == 1 {
		return p.addrs[0]
	}
	switch p.strategy {
	case config.SourceRandom:
		return p.addrs[rand.IntN(len(p.addrs))]
	case config.SourceRoundRobin:
		return p.addrs[(p.next.Add(1)-1)%uint64(len(p.addrs))]
	}
	return rendezvous(p.addrs, key)
}

// rendezvous picks the address with the highest hash of (key, address):
// highest random weight hashing. A key keeps its address while that
// address stays in the list, whatever else is added or removed: removing
// an address moves only the keys that were on it, and adding one moves
// only the keys it now wins, about 1/n of them. Hashing modulo the list's
// length would move most keys when the length changes. The cost is one
// hash per address per pick, which MaxSourceAddresses bounds.
func rendezvous(addrs []netip.Addr, key string) netip.Addr {
	h := fnv.New64a()
	h.Write([]byte(key))
	base := h.Sum64()
	best, bestScore := addrs[0], uint64(0)
	for i, a := range addrs {
		s := score(base, a)
		if i == 0 || s > bestScore {
			best, bestScore = a, s
		}
	}
	return best
}

// score mixes the key's hash with the address's 16 bytes. FNV alone
// spreads short inputs that differ in their last bytes poorly, so each
// word goes through splitmix64's finalizer.
func score(base uint64, a netip.Addr) uint64 {
	b := a.As16()
	x := mix(base ^ binary.BigEndian.Uint64(b[:8]))
	return mix(x ^ binary.BigEndian.Uint64(b[8:]))
}

func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// stickyKey is what a sticky pick hashes: the user, or the client address
// when no one logged in. The prefixes keep a user named like an address
// apart from that address.
func stickyKey(user string, client netip.Addr) string {
	if user != "" {
		return "user:" + user
	}
	return "ip:" + client.String()
}

// StickySource returns the address a sticky pick gives user (or client
// without a user) from addrs: for tests and tools that must know where a
// session will leave from.
func StickySource(addrs []netip.Addr, user string, client netip.Addr) netip.Addr {
	if len(addrs) == 0 {
		return netip.Addr{}
	}
	return rendezvous(addrs, stickyKey(user, client))
}
