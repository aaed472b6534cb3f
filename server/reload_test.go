package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	"ferry/test/testkit"
)

func parse(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("reload.toml", []byte(src))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// TestReload: a reload keeps the socket of an unchanged address (no
// refused attempt while it happens), applies the new plugins to new
// connections only, opens added listeners, closes removed ones, and
// leaves live channels alone; a bad config changes nothing.
func TestReload(t *testing.T) {
	echo := testkit.EchoServer(t)
	a, b, c := testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	deny := &testPlugin{name: "deny", reject: &plugins.RejectError{Code: plugins.CodeForbidden, Msg: "new rules"}}
	testInstMu.Lock()
	testInst["deny"] = deny
	testInstMu.Unlock()
	t.Cleanup(func() { testInstMu.Lock(); delete(testInst, "deny"); testInstMu.Unlock() })

	first := fmt.Sprintf(`
[[listener]]
name = "a"
listen = %q
[[listener]]
name = "c"
listen = %q
`, a, c)
	second := fmt.Sprintf(`
[[listener]]
name = "a"
listen = %q
plugins = ["deny"]
[[listener]]
name = "b"
listen = %q
[[plugin]]
name = "deny"
type = "servertest"
`, a, b)

	logs := &syncBuffer{}
	srv, err := New(parse(t, first), zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(time.Second)

	// A live tunnel through listener a, opened before the reload.
	live := dial(t, a)
	fmt.Fprintf(live, "CONNECT %s HTTP/1.1\r\n\r\n", echo)
	liveBr := bufio.NewReader(live)
	if resp, err := http.ReadResponse(liveBr, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT before reload: %v %v", resp, err)
	}

	// Connection attempts on a throughout the reload: none may fail.
	var refused, tried atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			conn, err := net.DialTimeout("tcp", a, time.Second)
			tried.Add(1)
			if err != nil {
				refused.Add(1)
				continue
			}
			conn.Close()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := srv.Reload(parse(t, second)); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	if refused.Load() != 0 {
		t.Fatalf("%d of %d connection attempts refused during the reload", refused.Load(), tried.Load())
	}

	// The live tunnel still works, under the old (empty) chain.
	live.Write([]byte("still here"))
	got := make([]byte, len("still here"))
	if _, err := io.ReadFull(liveBr, got); err != nil || string(got) != "still here" {
		t.Fatalf("live tunnel after reload: got %q, %v", got, err)
	}

	// New connections on a get the new plugin.
	nc := dial(t, a)
	fmt.Fprintf(nc, "CONNECT %s HTTP/1.1\r\n\r\n", echo)
	if resp, err := http.ReadResponse(bufio.NewReader(nc), nil); err != nil || resp.StatusCode != 403 {
		t.Fatalf("CONNECT after reload: got %v %v, want 403", resp, err)
	}
	// b is new and serves; c is gone.
	bc := dial(t, b)
	fmt.Fprintf(bc, "CONNECT %s HTTP/1.1\r\n\r\n", echo)
	if resp, err := http.ReadResponse(bufio.NewReader(bc), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT on the added listener: %v %v", resp, err)
	}
	if conn, err := net.DialTimeout("tcp", c, time.Second); err == nil {
		conn.Close()
		t.Fatal("the removed listener still accepts")
	}

	// A config that cannot be applied changes nothing.
	bad := fmt.Sprintf("[[listener]]\nname = \"a\"\nlisten = %q\nplugins = [\"missing\"]\n[[plugin]]\nname = \"missing\"\ntype = \"servertest\"\n", a)
	if err := srv.Reload(parse(t, bad)); err == nil || !strings.Contains(err.Error(), "no test instance") {
		t.Fatalf("bad reload: got %v, want the factory's error", err)
	}
	nc = dial(t, a)
	fmt.Fprintf(nc, "CONNECT %s HTTP/1.1\r\n\r\n", echo)
	if resp, err := http.ReadResponse(bufio.NewReader(nc), nil); err != nil || resp.StatusCode != 403 {
		t.Fatalf("after a failed reload: got %v %v, want the second config's 403", resp, err)
	}
	if got := len(srv.Addrs()); got != 2 {
		t.Fatalf("listeners after failed reload: got %d, want 2", got)
	}
}
