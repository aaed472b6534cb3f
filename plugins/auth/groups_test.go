package auth

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"ferry/plugins"
)

func TestParseGroups(t *testing.T) {
	long := strings.Repeat("u ", maxGroupLine/2+1)
	var many strings.Builder
	for i := range maxUserGroups + 1 {
		fmt.Fprintf(&many, "g%d: alice\n", i)
	}
	tests := []struct {
		name    string
		content string
		want    groupSet
		wantErr string
	}{
		{name: "empty", content: "", want: groupSet{}},
		{name: "comments blanks crlf", content: "# groups\r\n\r\n  \nstaff: alice bob\r\n#blocked: carol\n",
			want: groupSet{"alice": {"staff"}, "bob": {"staff"}}},
		{name: "tabs and spaces", content: "staff :\talice   bob\t\n", want: groupSet{"alice": {"staff"}, "bob": {"staff"}}},
		{name: "no users", content: "empty:\n", want: groupSet{}},
		{name: "user in two groups", content: "a: alice\nb: alice\n", want: groupSet{"alice": {"a", "b"}}},
		{name: "group over two lines", content: "staff: alice\nstaff: bob\n", want: groupSet{"alice": {"staff"}, "bob": {"staff"}}},
		{name: "duplicate user", content: "staff: alice alice\nstaff: alice\n", want: groupSet{"alice": {"staff"}}},
		{name: "unicode group", content: "équipe: alice\n", want: groupSet{"alice": {"équipe"}}},
		{name: "no colon", content: "staff alice\n", wantErr: "f:1: want group: user1 user2"},
		{name: "empty group", content: "ok: a\n: alice\n", wantErr: "f:2: empty group name"},
		{name: "space in group", content: "my staff: alice\n", wantErr: `f:1: group name "my staff" contains whitespace`},
		{name: "control in group", content: "st\x01aff: alice\n", wantErr: "f:1: group name \"st\\x01aff\" contains a control character"},
		{name: "bad utf-8", content: "st\xffaff: alice\n", wantErr: "f:1: group name \"st\\xffaff\" is not valid UTF-8"},
		{name: "long group name", content: strings.Repeat("g", 256) + ": alice\n", wantErr: "f:1: group name longer than 255 bytes"},
		{name: "colon in user", content: "staff: alice:x\n", wantErr: "f:1: group staff: user name contains ':'"},
		{name: "control in user", content: "staff: al\x7fice\n", wantErr: "f:1: group staff: user name contains a control character"},
		{name: "huge line", content: "ok: a\nbig: " + long + "\n", wantErr: "f:2: line longer than 64 KiB: write the group over several lines"},
		{name: "huge line without newline", content: "big: " + long, wantErr: "f:1: line longer than 64 KiB"},
		{name: "too many groups", content: many.String(), wantErr: fmt.Sprintf("f:%d: group g%d: user alice is in more than 256 groups", maxUserGroups+1, maxUserGroups)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGroups("f", []byte(tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGroupsConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeUsers(t, filepath.Join(dir, "bad"), "staff: alice\nstaff bob\n")
	missing := fmt.Sprintf("%q", filepath.Join(dir, "missing"))
	users := "users = { alice = \"plain:a\" }\n"
	tests := []struct {
		name, body, want string
	}{
		{"bad file", users + "groups_file = " + bad + "\n", "t.toml:7:1: plugin[0].groups_file: " + filepath.Join(dir, "bad") + ":2: want group: user1 user2"},
		{"missing file", users + "groups_file = " + missing + "\n", "plugin[0].groups_file: stat " + filepath.Join(dir, "missing")},
		{"empty inline group", users + "groups = { \"\" = [\"alice\"] }\n", `plugin[0].groups."": empty group name`},
		{"space in inline group", users + "groups = { \"a b\" = [\"alice\"] }\n", `plugin[0].groups."a b": group name "a b" contains whitespace`},
		{"bad inline user", users + "groups = { staff = [\"alice\", \"\"] }\n", "plugin[0].groups.staff[1]: empty user name"},
		{"inline not a list", users + "groups = { staff = \"alice\" }\n", "plugin[0].groups.staff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.body, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error\n%v\nwant it to contain\n%s", err, tt.want)
			}
		})
	}
}

// TestAuthenticateGroups: a login gives the user's groups from the
// config and the file together, a cached login too; a refusal none.
func TestAuthenticateGroups(t *testing.T) {
	dir := t.TempDir()
	htpasswd := writeUsers(t, filepath.Join(dir, "users"), "carol:"+hashOf(t, "c")+"\n")
	groups := writeUsers(t, filepath.Join(dir, "groups"), "staff: alice carol\nops: carol\n")
	p := mustBuild(t, "htpasswd = "+htpasswd+"\ngroups_file = "+groups+
		"\nusers = { alice = \"plain:a\", bob = \"plain:b\" }\ngroups = { admins = [\"alice\"], staff = [\"alice\"] }\n")
	tests := []struct {
		name, user, pass string
		want             []string
		wantErr          bool
	}{
		{name: "inline and file", user: "alice", pass: "a", want: []string{"admins", "staff"}},
		{name: "no groups", user: "bob", pass: "b"},
		{name: "bcrypt user", user: "carol", pass: "c", want: []string{"ops", "staff"}},
		{name: "bcrypt user cached", user: "carol", pass: "c", want: []string{"ops", "staff"}},
		{name: "wrong password", user: "carol", pass: "x", wantErr: true},
		{name: "unknown user", user: "staff", pass: "x", wantErr: true},
	}
	n := countCompares(p)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &plugins.Session{ID: "t", Client: testSession.Client, Protocol: "http"}
			err := p.Authenticate(context.Background(), s, tt.user, tt.pass)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(s.Groups, tt.want) {
				t.Fatalf("got groups %q, want %q", s.Groups, tt.want)
			}
		})
	}
	if got := n.Load(); got != 3 { // carol once, the two refusals
		t.Fatalf("got %d bcrypt checks, want 3: the cached login checked again", got)
	}
}

// TestGroupsReload: a changed groups file applies without a restart; a
// bad one keeps the groups before it, and the users stay.
func TestGroupsReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groups")
	p := mustBuild(t, "users = { alice = \"plain:a\" }\ngroups_file = "+writeUsers(t, path, "staff: alice\n")+"\n")
	p.settle = 0
	steps := []struct {
		name, content string
		changed       bool
		wantErr       string
		want          []string
	}{
		{name: "unchanged", content: "staff: alice\n", want: []string{"staff"}},
		{name: "moved", content: "blocked: alice\n", changed: true, want: []string{"blocked"}},
		{name: "bad keeps", content: "blocked alice\n", wantErr: ":1: want group: user1 user2", want: []string{"blocked"}},
		{name: "bad again not reported", content: "blocked alice\n", want: []string{"blocked"}},
		{name: "fixed", content: "# none\n", changed: true},
	}
	for i, st := range steps {
		writeUsers(t, path, st.content)
		// A new time each step, older than the racy window, so each
		// write is seen as the change it is and no more.
		mod := time.Now().Add(-time.Hour + time.Duration(i)*time.Minute)
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
		changed, err := p.reload()
		if changed != st.changed || (err == nil) != (st.wantErr == "") ||
			err != nil && !strings.Contains(err.Error(), st.wantErr) {
			t.Fatalf("%s: reload got %v, %v; want %v, %q", st.name, changed, err, st.changed, st.wantErr)
		}
		s := &plugins.Session{}
		if err := p.Authenticate(context.Background(), s, "alice", "a"); err != nil {
			t.Fatalf("%s: alice refused: %v", st.name, err)
		}
		if !reflect.DeepEqual(s.Groups, st.want) {
			t.Fatalf("%s: got groups %q, want %q", st.name, s.Groups, st.want)
		}
	}
}

func FuzzParseGroups(f *testing.F) {
	f.Add([]byte("staff: alice bob\n# c\nops:\tcarol\n"))
	f.Add([]byte("a:\n:b\n\xff: c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		gs, err := parseGroups("f", data)
		if err != nil {
			return
		}
		for user, groups := range gs {
			if checkName(user) != nil || len(groups) > maxUserGroups {
				t.Fatalf("accepted user %q in %d groups", user, len(groups))
			}
		}
	})
}

// BenchmarkParseGroups parses a file of 1,000 groups of 100 users each,
// out of 10,000 users (100,000 memberships, about 1 MB).
func BenchmarkParseGroups(b *testing.B) {
	var sb strings.Builder
	for g := range 1000 {
		fmt.Fprintf(&sb, "group%d:", g)
		for u := range 100 {
			fmt.Fprintf(&sb, " user%d", (g*37+u*101)%10000)
		}
		sb.WriteByte('\n')
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseGroups("f", data); err != nil {
			b.Fatal(err)
		}
	}
}
