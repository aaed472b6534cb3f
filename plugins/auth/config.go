package auth

import "ferry/plugins/pkg/units"

// Config is the plugin's TOML table. With the htpasswd backend (the
// default) Users and Htpasswd may be used together, and at least one
// must be set; the remote backends take their own settings instead.
type Config struct {
	// Realm names the protection space in HTTP 407 challenges
	// (Proxy-Authenticate: Basic realm="..."). Default "ferry"; printable
	// ASCII.
	Realm string `toml:"realm"`
	// Users maps user names to a bcrypt hash, or to "plain:" and the
	// password in plain text (for tests and development: anyone who can
	// read the config has it).
	Users map[string]string `toml:"users"`
	// Htpasswd is a file of "user:hash" lines with bcrypt hashes (htpasswd
	// -B). It must exist and parse when ferry starts; later changes are
	// picked up without a restart. A user may not be in both Users and the
	// file. Relative paths are from the config file's directory.
	Htpasswd string `toml:"htpasswd"`
	// ReloadInterval is how often the file's modification time and size
	// are checked. Default 2s; at least 100ms; "0s" never re-reads it. Only
	// with Htpasswd.
	ReloadInterval *units.Duration `toml:"reload_interval"`
	// GroupsFile is a file of "group: user1 user2" lines, Apache's
	// AuthGroupFile format (see parseGroups). Optional; re-read on change
	// like Htpasswd. Relative paths are from the config file's directory.
	GroupsFile string `toml:"groups_file"`
	// Groups maps group names to their users, with or without GroupsFile:
	// a user's groups are those of both.
	Groups map[string][]string `toml:"groups"`

	// MaxFailures is how many failed logins a client address (an IPv6
	// /64) may have within FailureWindow before it is locked out. Default
	// 5; 0 never locks an address out.
	MaxFailures *int `toml:"max_failures"`
	// FailureWindow is the period over which failures count. Default 1m.
	FailureWindow *units.Duration `toml:"failure_window"`
	// Lockout is how long the first lockout of an address lasts; each
	// further one lasts twice the one before. Default 1s.
	Lockout *units.Duration `toml:"lockout"`
	// MaxLockout caps the doubling. An address without failures for this
	// long after its last lockout starts again from Lockout. Default 5m;
	// at least Lockout.
	MaxLockout *units.Duration `toml:"max_lockout"`
	// MaxConcurrentChecks bounds the bcrypt checks that run at once, over
	// all clients of the instance. Default GOMAXPROCS (the CPUs ferry
	// uses); at least 1.
	MaxConcurrentChecks *int `toml:"max_concurrent_checks"`

	// RemoteConfig chooses the backend, and bounds and caches a remote
	// one (remote.go); HTTPConfig asks a service (httpbackend.go);
	// LDAPConfig binds to a directory (ldapbackend.go). Of RemoteConfig,
	// NegativeCacheTTL also applies to the htpasswd backend: how long a
	// refusal is remembered per client address. Default 1m there; "0s":
	// never.
	RemoteConfig
	HTTPConfig
	LDAPConfig
}
