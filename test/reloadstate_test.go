package test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"ferry/test/testkit"
)

// TestReloadKeepsConnlimit: a reload during live traffic keeps connlimit's
// counts when the instance keeps its name and settings: a client at its
// limit stays refused across the reload, and a tunnel of the old
// configuration that closes after it makes room. When the reload changes
// the limit, the new instance starts afresh: the tunnels still open under
// the old configuration no longer count.
func TestReloadKeepsConnlimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		after string // the limit table after the reload
		// room is how many new tunnels the client may open after the
		// reload while its 2 old ones are open.
		room int
	}{
		{name: "same settings", after: "type = \"connlimit\"\n# reloaded\nper_client   = 2", room: 0},
		{name: "changed limit", after: "type = \"connlimit\"\nper_client = 3", room: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFerry(t, pluginConfig("type = \"connlimit\"\nper_client = 2"), nil)
			target := newEchoTarget(t)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			dial := func(what string) *testkit.BufConn {
				t.Helper()
				c, err := testkit.DialCONNECT(ctx, f.addr, target.Addr)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				t.Cleanup(func() { c.Close() })
				if err := echo(c, what+"\n"); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				return c
			}
			old := []*testkit.BufConn{dial("old tunnel 1"), dial("old tunnel 2")}
			if got := ask(t, f.addr, target.Addr, askCONNECT); got != "403" {
				t.Fatalf("third tunnel before the reload: got %s, want 403", got)
			}

			path := f.cmd.Args[len(f.cmd.Args)-1]
			writeFile(t, path, pluginConfig(tt.after)(f.addr))
			f.send(t, syscall.SIGHUP)
			f.waitLine(t, "configuration reloaded", nil)

			for i := range tt.room {
				dial(fmt.Sprintf("new tunnel %d", i+1))
			}
			if got := ask(t, f.addr, target.Addr, askCONNECT); got != "403" {
				t.Fatalf("after the reload and %d new tunnels: got %s, want 403", tt.room, got)
			}
			for i, c := range old {
				if err := echo(c, "still here\n"); err != nil {
					t.Fatalf("old tunnel %d after the reload: %v", i+1, err)
				}
			}

			// An old tunnel closes: its access line comes after connlimit's
			// OnClose (closers run in reverse order), so it has given back.
			old[0].Close()
			waitFor(t, func() bool {
				return len(f.lines("access", func(l logLine) bool { return l.str("reason") != "rejected" })) > 0
			})
			if tt.room == 0 {
				dial("tunnel after an old one closed")
			}
			if got := ask(t, f.addr, target.Addr, askCONNECT); got != "403" {
				t.Errorf("at the limit again: got %s, want 403", got)
			}
		})
	}
}

// TestReloadKeepsRatelimit: a client that used up its new-connection rate
// stays refused across a reload that keeps ratelimit's settings; one that
// changes them starts afresh.
func TestReloadKeepsRatelimit(t *testing.T) {
	t.Parallel()
	const limit = "type = \"ratelimit\"\nnew_connections = { per_client = 2, interval = \"1h\" }"
	tests := []struct {
		name, after string
		want        string // the next CONNECT after the reload
	}{
		{name: "same settings", after: "# reloaded\n" + limit, want: "403"},
		{name: "changed rate", after: "type = \"ratelimit\"\nnew_connections = { per_client = 3, interval = \"1h\" }", want: "200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFerry(t, pluginConfig(limit), nil)
			target := newEchoTarget(t)
			for i, want := range []string{"200", "200", "403"} {
				if got := ask(t, f.addr, target.Addr, askCONNECT); got != want {
					t.Fatalf("CONNECT %d before the reload: got %s, want %s", i+1, got, want)
				}
			}
			writeFile(t, f.cmd.Args[len(f.cmd.Args)-1], pluginConfig(tt.after)(f.addr))
			f.send(t, syscall.SIGHUP)
			f.waitLine(t, "configuration reloaded", nil)
			if got := ask(t, f.addr, target.Addr, askCONNECT); got != tt.want {
				t.Errorf("CONNECT after the reload: got %s, want %s", got, tt.want)
			}
		})
	}
}
