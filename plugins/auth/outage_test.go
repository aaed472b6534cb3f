package auth

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFileOutage: the htpasswd backend's outage, a missing or bad file,
// keeps the last good users, and each failure is logged and counted once
// however many polls see it.
func TestFileOutage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	var logs bytes.Buffer
	p, err := build(t, "htpasswd = "+writeUsers(t, path, "alice:"+hashOf(t, "a")+"\n")+"\nreload_interval = \"0s\"\n", &logs)
	if err != nil {
		t.Fatal(err)
	}
	p.settle = 0
	steps := []struct {
		name   string
		change func()
		errors uint64 // reload_errors after three polls
	}{
		{name: "file removed", change: func() { os.Remove(path) }, errors: 1},
		{name: "bad file", change: func() { writeUsers(t, path, "alice:{SHA}x\n") }, errors: 2},
		{name: "good file again", change: func() { writeUsers(t, path, "alice:"+hashOf(t, "a")+"\nbob:"+hashOf(t, "b")+"\n") }, errors: 2},
	}
	for _, st := range steps {
		st.change()
		p.htpasswd.seen.racy = true // same size and time as before: read it
		for range 3 {
			p.poll()
		}
		if got := p.Counts().ReloadErrors; got != st.errors {
			t.Fatalf("%s: reload_errors %d, want %d", st.name, got, st.errors)
		}
		if err := p.check("alice", "a"); err != nil {
			t.Fatalf("%s: alice refused: %v", st.name, err)
		}
	}
	if err := p.check("bob", "b"); err != nil {
		t.Fatalf("bob of the good file refused: %v", err)
	}
	if got := strings.Count(logs.String(), "keeping the current ones"); got != 2 {
		t.Errorf("%d error lines, want 2:\n%s", got, logs.String())
	}
}
