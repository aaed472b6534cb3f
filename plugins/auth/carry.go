package auth

import (
	"reflect"

	"ferry/plugins"
)

// settings is what an instance was built from: its decoded table and the
// directory its relative paths start from. CarryFrom adopts the state of
// an instance built from equal settings only.
type settings struct {
	cfg Config
	dir string
}

var _ plugins.Carrier = (*Plugin)(nil)

// CarryFrom implements plugins.Carrier: on a reload that keeps the
// instance's name, type and settings, the new instance shares the old
// one's state rather than starting afresh, so that a reload neither makes
// every user pay bcrypt or a backend call again nor lets a locked-out
// client start over:
//
//   - the success cache, with its HMAC key (a remote backend's results are
//     keyed under it too);
//   - the negative cache of the htpasswd backend;
//   - the throttle: failures, lockouts and their levels, checks in flight;
//   - the bcrypt check slots, so max_concurrent_checks bounds both
//     instances together while the old one drains;
//   - a remote backend's results (allows and denies with the time the
//     backend gave them, so cache_ttl, negative_cache_ttl and grace_period
//     go on counting from that answer), its calls in flight (a login after
//     the reload joins a call the old instance started) and its call slots.
//
// Shared, not copied: the old instance goes on checking the logins of
// connections accepted before the reload, and what it learns serves the
// new one. Nothing of it needs closing, so the old instance's end leaves
// it whole. The rest is the instance's own: the users and groups (New has
// just read the files, which the settings name), the counters (metrics
// restart at a reload), the backend's connections, and the attributes
// of SOCKS5 logins waiting for their OnConnect (pending: a login and its
// OnConnect run on the same connection, under the same instance).
//
// ferry calls it with equal settings only; it checks anyway, and keeps its
// own state when old is not an auth instance built from the same ones.
func (p *Plugin) CarryFrom(old plugins.Plugin) {
	o := base(old)
	if o == nil || o == p || !reflect.DeepEqual(o.conf, p.conf) || (o.remote == nil) != (p.remote == nil) {
		return
	}
	p.cache, p.denied, p.throttle, p.slots = o.cache, o.denied, o.throttle, o.slots
	if p.remote != nil {
		p.remote.results, p.remote.flights, p.remote.slots = o.remote.results, o.remote.flights, o.remote.slots
	}
}

// base is the *Plugin of an auth instance of either backend; nil for a
// plugin of another type.
func base(pl plugins.Plugin) *Plugin {
	switch v := pl.(type) {
	case *Plugin:
		return v
	case remotePlugin:
		return v.Plugin
	}
	return nil
}
