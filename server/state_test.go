package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/state"
)

// TestStores: configurations with the same location share one store,
// which opens once (at start) and closes with the last reference; another
// location gets its own.
func TestStores(t *testing.T) {
	dir := t.TempDir()
	parse := func(stateKeys string) *config.Config {
		t.Helper()
		src := "[state]\n" + stateKeys + "\n[[listener]]\nlisten = \"127.0.0.1:0\"\n"
		cfg, err := config.Parse(filepath.Join(dir, "ferry.toml"), []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	k := &stores{log: zerolog.Nop()}
	a, b := parse(`dir = "a"`), parse("dir = \"a\"\non_error = \"fail_closed\"")
	ha, releaseA, err := k.acquire(a)
	if err != nil {
		t.Fatal(err)
	}
	hb, releaseB, err := k.acquire(b)
	if err != nil {
		t.Fatal(err)
	}
	if ha != hb || hb.st.OnError() != state.FailClosed {
		t.Fatalf("same dir: stores %p and %p, on_error %v; want one store taking the later on_error", ha, hb, hb.st.OnError())
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Fatalf("the store's dir exists before start: %v", err)
	}
	for _, cfg := range []*config.Config{a, b} {
		if err := k.start(ha, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a", state.BoltFile)); err != nil {
		t.Fatalf("after start: %v", err)
	}
	hc, releaseC, err := k.acquire(parse(`dir = "c"`))
	if err != nil || hc == ha {
		t.Fatalf("another dir: %v, same store %v", err, hc == ha)
	}
	releaseC()
	releaseA()
	releaseA() // a second call does nothing
	if n := len(k.open); n != 1 {
		t.Fatalf("after releasing c and a: %d stores open, want 1", n)
	}
	releaseB()
	if n := len(k.open); n != 0 {
		t.Fatalf("after the last release: %d stores open, want 0", n)
	}
	// Closed: the file's lock is free for another open.
	bk, err := state.OpenBolt(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	bk.Close()
}
