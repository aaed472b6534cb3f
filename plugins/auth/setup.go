package auth

import (
	"strings"
	"time"

	"ferry/plugins"
)

// checkHtpasswdConfig checks the htpasswd backend's settings.
func checkHtpasswdConfig(cfg Config, every time.Duration) error {
	switch {
	case cfg.Realm == "":
		return plugins.Errorf("realm", "must not be empty")
	case strings.ContainsFunc(cfg.Realm, func(r rune) bool { return r < 0x20 || r > 0x7e }):
		return plugins.Errorf("realm", "use printable ASCII only")
	case len(cfg.Users) == 0 && cfg.Htpasswd == "":
		return plugins.Errorf("users", "none given; set users, htpasswd, or both")
	case cfg.ReloadInterval != nil && cfg.Htpasswd == "" && cfg.GroupsFile == "":
		return plugins.Errorf("reload_interval", "only applies with htpasswd or groups_file")
	case every != 0 && every < minReloadInterval:
		return plugins.Errorf("reload_interval", "must be at least %v, or \"0s\" to never reload", minReloadInterval)
	}
	return nil
}

// startReload registers the poller that re-reads the files, when there
// are files to re-read.
func (p *Plugin) startReload(env plugins.Env, every time.Duration) error {
	if p.htpasswd == nil && p.groupsFile == nil {
		return nil
	}
	p.settle = settleDelay
	if every <= 0 || env.Services == nil {
		return nil
	}
	// Instance names are unique, so each instance has its own.
	_, err := env.Services.Provide("auth-reload:"+env.Name, func() (plugins.Service, error) {
		return &poller{p: p, every: every}, nil
	})
	return err
}

// warnPlain warns once about plain text passwords in the config.
func (p *Plugin) warnPlain() {
	var plain []string
	for name, e := range p.inline {
		if e.plain != nil {
			plain = append(plain, name)
		}
	}
	if len(plain) > 0 {
		p.log.Warn().Strs("users", plain).Msg("plain text passwords in the config: for tests and development only")
	}
}
