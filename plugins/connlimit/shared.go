package connlimit

import (
	"context"
	"errors"
	"fmt"

	"ferry/state"
)

// count counts c: through the fleet's leases when the instance has a
// shared store, in the process's table otherwise, or when the store
// fails and on_error is fail_open (each ferry then holds the limits on
// its own: the fleet may admit up to its size times them meanwhile).
// With fail_closed a store that fails refuses the channel.
func (p *Plugin) count(ctx context.Context, c *counted) error {
	if p.st == nil {
		return p.take(*c)
	}
	err := p.lease(ctx, c)
	var full fullError
	switch {
	case err == nil:
		c.shared = true
		return nil
	case errors.As(err, &full):
		return err
	case p.st.OnError() == state.FailClosed:
		// The client sees this: the store's error, which names Redis's
		// address, is in the store's own warning instead.
		return errors.New("connection limits cannot be checked now (state store unavailable, fail_closed)")
	}
	return p.take(*c)
}

// fullError is a refusal because a scope is at its limit across the
// fleet; its message is for the client.
type fullError struct{ msg string }

func (e fullError) Error() string { return e.msg }

// lease takes a lease in each scope of c, or in none: one refused (or
// failing) gives back those taken before it.
func (p *Plugin) lease(ctx context.Context, c *counted) error {
	type scope struct {
		name, subject string
		limit         int
	}
	var scopes []scope
	if c.client.IsValid() {
		scopes = append(scopes, scope{"client", c.client.String(), p.perClient})
	}
	if c.byUser {
		scopes = append(scopes, scope{"user", c.user, p.perUser})
	}
	for _, sc := range scopes {
		l, err := p.st.Lease(ctx, "connlimit/"+p.name+"/"+sc.name, sc.subject, sc.limit)
		if err != nil {
			releaseAll(c.leases)
			c.leases = nil
			if errors.Is(err, state.ErrLimit) {
				return fullError{fmt.Sprintf("%s %s has %d channels open across the fleet, the limit", sc.name, sc.subject, sc.limit)}
			}
			return err
		}
		c.leases = append(c.leases, l)
	}
	return nil
}

func releaseAll(ls []*state.Lease) {
	for _, l := range ls {
		l.Release()
	}
}
