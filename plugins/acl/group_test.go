package acl

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestGroupRules: a group condition matches a session whose user is in
// one of the listed groups; a session without a user never does, whatever
// groups it carries.
func TestGroupRules(t *testing.T) {
	p := newACL(t, `
default = "deny"

[[plugin.rule]]               # rule[0]
action = "deny"
group = ["blocked"]

[[plugin.rule]]               # rule[1]
action = "allow"
group = ["staff", "ops"]
port = [443]
`)
	tests := []struct {
		name   string
		user   string
		groups []string
		port   string
		want   string
	}{
		{name: "staff", user: "alice", groups: []string{"staff"}, port: "443", want: "allow"},
		{name: "ops of two", user: "bob", groups: []string{"dev", "ops"}, port: "443", want: "allow"},
		{name: "staff other port", user: "alice", groups: []string{"staff"}, port: "80", want: "deny"},
		{name: "blocked first", user: "carol", groups: []string{"staff", "blocked"}, port: "443", want: "deny"},
		{name: "no groups", user: "dave", port: "443", want: "deny"},
		{name: "case differs", user: "erin", groups: []string{"Staff"}, port: "443", want: "deny"},
		{name: "groups without user", groups: []string{"staff"}, port: "443", want: "deny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := req{target: "example.com:" + tt.port, user: tt.user}.session()
			s.Groups = tt.groups
			if got := connect(t, p, s); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	if !p.RestrictsClients() {
		t.Fatal("default deny with a group on every allow does not restrict clients")
	}
}

func TestGroupConfigErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"empty", "default = \"deny\"\nrule = [{ action = \"allow\", group = [\"\"] }]\n", "plugin[0].rule[0].group[0]: empty group name"},
		{"space", "default = \"deny\"\nrule = [{ action = \"allow\", group = [\"a b\"] }]\n", `plugin[0].rule[0].group[0]: group name "a b" contains whitespace`},
		{"control", "default = \"deny\"\nrule = [{ action = \"allow\", group = [\"a\\tb\"] }]\n", "contains whitespace"},
		{"not a list", "default = \"deny\"\nrule = [{ action = \"allow\", group = \"staff\" }]\n", "plugin[0].rule[0].group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tryACL(tt.body, zerolog.Nop())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error\n%v\nwant it to contain\n%s", err, tt.want)
			}
		})
	}
}
