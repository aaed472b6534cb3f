package ratelimit

import (
	"context"
	"errors"

	"ferry/plugins"
	"ferry/state"
)

// shareFrom shares the instance's buckets through env's store when
// [state] is shared (Redis).
func (p *Plugin) shareFrom(env plugins.Env) error {
	if !env.StateShared || env.State == nil {
		return nil
	}
	st, err := env.State()
	if err != nil {
		return err
	}
	p.share(st)
	return nil
}

// share makes the client and user scopes count against buckets shared by
// every ferry on st (Redis), besides each ferry's own limiters: a scope's
// rate then bounds the fleet's total, not each ferry's. The local
// limiters stay, at the same rates, so that a ferry alone never exceeds
// them and, while the store fails with fail_open, each ferry holds them
// on its own. Per-channel limits and new_connections stay local: a
// channel lives in one ferry, and new-connection rates need a store
// call per connection for little gain.
func (p *Plugin) share(st *state.Store) {
	p.st = st
	for scope, t := range map[string]*table{"client": p.clients, "user": p.users, "user_from_auth": p.authUsers} {
		if t == nil {
			continue
		}
		prefix := "ratelimit/" + p.name + "/" + scope
		t.onNew = func(key string, b *bucket) {
			if b.up != nil {
				b.sharedUp = st.Bucket(prefix+"/up", key, int64(b.up.Limit()), int64(b.up.Burst()))
			}
			if b.down != nil {
				b.sharedDown = st.Bucket(prefix+"/down", key, int64(b.down.Limit()), int64(b.down.Burst()))
			}
		}
	}
}

// addShared adds the shared buckets of the channel's client and user to
// its flows.
func (c *channelState) addShared() {
	for _, b := range []*bucket{c.client, c.user} {
		if b == nil {
			continue
		}
		if b.sharedUp != nil {
			c.up.shared = append(c.up.shared, b.sharedUp)
		}
		if b.sharedDown != nil {
			c.down.shared = append(c.down.shared, b.sharedDown)
		}
	}
}

// takeShared takes n bytes from each shared bucket of f. While the store
// fails, fail_open lets the bytes pass (the local limiters still hold
// this ferry to the rate) and fail_closed ends the channel.
func (p *Plugin) takeShared(ctx context.Context, f *flow, n int) error {
	for _, b := range f.shared {
		err := b.Take(ctx, int64(n), p.sleep)
		switch {
		case err == nil:
		case errors.Is(err, state.ErrUnavailable) && p.st.OnError() == state.FailOpen:
		default:
			return plugins.ErrClose
		}
	}
	return nil
}
