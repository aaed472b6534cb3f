package server

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
)

// TestRelativePluginPaths: a relative path in a plugin's settings is taken
// from the config file's directory, not from ferry's working directory.
func TestRelativePluginPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.toml")
	src := "[[listener]]\nlisten = \"127.0.0.1:0\"\nplugins = [\"log\"]\n[[plugin]]\nname = \"log\"\nfile = \"logs-access.log\"\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv.Addrs()[0].String())
	c.Write([]byte("GARBAGE\r\n\r\n")) // answered 400; no access line needed
	c.Close()
	srv.Shutdown(time.Second)
	if _, err := os.Stat(filepath.Join(dir, "logs-access.log")); err != nil {
		t.Fatalf("access log not created next to the config: %v", err)
	}
	if _, err := os.Stat("logs-access.log"); err == nil {
		os.Remove("logs-access.log")
		t.Fatal("access log created in the working directory")
	}
}
