//go:build linux

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"ferry/test/testkit"
)

// groupsConfig is the e2e listener behind auth (users from htpasswd,
// groups from groupsFile and one inline group) and groupPolicy's acl and
// routes. The admin API listens on adminAddr.
func groupsConfig(htpasswd, groupsFile, parent, adminAddr string) func(addr string) string {
	return chainConfig([]string{"auth", "acl", "log"}, fmt.Sprintf(`[admin]
listen = %q
token = "e2e-token"

[[plugin]]
name = "auth"
htpasswd = %q
groups_file = %q
reload_interval = "100ms"
groups = { dev = ["carol"] }

`, adminAddr, htpasswd, groupsFile)+groupPolicy(parent))
}

// groupPolicy are the tables the group tests share: routes for group
// "staff" through the SOCKS5 parent, group "dev" direct; an acl that
// denies group "blocked"; the log plugin.
func groupPolicy(parent string) string {
	return fmt.Sprintf(`[[upstream]]
name = "parent"
url = "socks5://%s"

[[route]]
group = ["staff"]
upstream = "parent"

[[route]]
group = ["dev"]
upstream = "direct"

[[plugin]]
name = "acl"
default = "allow"
rule = [{ action = "deny", group = ["blocked"] }]

[[plugin]]
name = "log"
`, parent)
}

// byUser matches access lines of one user.
func byUser(user string) func(logLine) bool {
	return func(l logLine) bool { return l.str("user") == user }
}

// groupsOf is an access line's groups field.
func groupsOf(l logLine) []string {
	var out []string
	list, _ := l["groups"].([]any)
	for _, g := range list {
		s, _ := g.(string)
		out = append(out, s)
	}
	return out
}

// TestGroups: users of different groups with curl through the real
// binary: the route of group staff goes through a parent ferry, group dev
// goes direct, the acl refuses group blocked, and the access lines and
// /channels show the groups. A change of the groups file moves a user.
func TestGroups(t *testing.T) {
	t.Parallel()
	needCurl(t)
	web := testkit.HTTPTarget(t)
	url := web.URL + "/"
	target := web.Listener.Addr().String()
	dir := t.TempDir()
	htpasswd, groupsFile := filepath.Join(dir, "users"), filepath.Join(dir, "groups")
	writeFile(t, htpasswd, htpasswdLine(t, "alice", "a")+htpasswdLine(t, "bob", "b")+
		htpasswdLine(t, "carol", "c")+htpasswdLine(t, "mallory", "m"))
	writeFile(t, groupsFile, "# e2e groups\nstaff: alice\nops: alice bob\nblocked: mallory\n")
	parent := startFerry(t, withJSON(""), nil)
	adminAddr := freeAddr(t)
	f := startFerry(t, groupsConfig(htpasswd, groupsFile, parent.addr, adminAddr), nil)
	code := []string{"-s", "-o", "/dev/null", "-w", "%{http_code}"}

	tests := []struct {
		name, user, pass string
		socks            bool
		wantCode         string
		upstream         string
		groups           []string
	}{
		{name: "staff through the parent", user: "alice", pass: "a", wantCode: "200", upstream: "parent", groups: []string{"ops", "staff"}},
		{name: "no route group", user: "bob", pass: "b", wantCode: "200", upstream: "direct", groups: []string{"ops"}},
		{name: "inline group direct", user: "carol", pass: "c", wantCode: "200", upstream: "direct", groups: []string{"dev"}},
		{name: "blocked", user: "mallory", pass: "m", wantCode: "403", upstream: "direct", groups: []string{"blocked"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := curl(t, append([]string{"-x", "http://" + f.addr, "-U", tt.user + ":" + tt.pass, url}, code...)...)
			if got != tt.wantCode {
				t.Fatalf("curl as %s: got %s, want %s", tt.user, got, tt.wantCode)
			}
			l := f.waitLine(t, "access", byUser(tt.user))
			if g := groupsOf(l); !reflect.DeepEqual(g, tt.groups) {
				t.Errorf("access groups = %q, want %q: %v", g, tt.groups, l)
			}
			if got := l.str("upstream"); tt.wantCode == "200" && got != tt.upstream {
				t.Errorf("access upstream = %q, want %q: %v", got, tt.upstream, l)
			}
		})
	}
	// Only alice went through the parent.
	if n := len(parent.lines("access", byTarget(target))); n != 1 {
		t.Errorf("parent access lines for %s: got %d, want 1 (alice's)", target, n)
	}

	// A SOCKS5 login carries the groups to the session: /channels lists
	// alice's live tunnel with them, through the parent.
	echo := testkit.EchoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testkit.DialSOCKS5Auth(ctx, f.addr, echo, "alice", "a")
	if err != nil {
		t.Fatalf("socks5 as alice: %v", err)
	}
	defer c.Close()
	testkit.EchoCheck(t, c)
	ch := channelOf(t, adminAddr, echo)
	if !reflect.DeepEqual(ch.Groups, []string{"ops", "staff"}) || ch.User != "alice" || ch.Upstream != "parent" {
		t.Errorf("/channels: got %+v, want alice in ops and staff through parent", ch)
	}
	c.Close()
	parent.waitLine(t, "access", byTarget(echo))

	// bob joins staff: his next request goes through the parent.
	writeFile(t, groupsFile, "staff: alice bob\nblocked: mallory\n")
	deadline := time.Now().Add(10 * time.Second)
	for len(parent.lines("access", byTarget(target))) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("bob's requests did not go through the parent within 10s of the groups change")
		}
		curl(t, "-x", "http://"+f.addr, "-U", "bob:b", url)
		time.Sleep(50 * time.Millisecond)
	}
	f.waitLine(t, "users reloaded", nil)
}

// channelInfo is what TestGroups reads of /channels.
type channelInfo struct {
	User, Target, Upstream string
	Groups                 []string
}

// channelOf reads /channels of the admin API at adminAddr (token
// e2e-token) and returns the live channel to target.
func channelOf(t *testing.T, adminAddr, target string) channelInfo {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/channels", nil)
	req.Header.Set("Authorization", "Bearer e2e-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("/channels: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var chans []channelInfo
	if err := json.Unmarshal(body, &chans); err != nil {
		t.Fatalf("/channels: %v: %s", err, body)
	}
	for _, ch := range chans {
		if ch.Target == target {
			return ch
		}
	}
	t.Fatalf("/channels: no channel to %s: %s", target, body)
	return channelInfo{}
}
