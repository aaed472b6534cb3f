//go:build linux

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/test/testkit"
)

// authService is an auth service for backend = "http" on loopback: it
// allows a user whose password is "pw-" + the name, with the fields of
// attrs[user] in its answer (groups, upstream, source_address, rate),
// and counts its calls per user.
type authService struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string]int
}

func newAuthService(t *testing.T, attrs map[string]map[string]any) *authService {
	a := &authService{calls: map[string]int{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ User, Password, Client, Listener string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Listener != "e2e" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.calls[req.User]++
		a.mu.Unlock()
		ans := maps.Clone(attrs[req.User])
		if ans == nil {
			ans = map[string]any{}
		}
		ans["allow"] = req.Password == "pw-"+req.User
		json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *authService) callsOf() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.calls)
}

// authHTTPConfig is the e2e listener behind auth with backend "http" at
// url, which may send users through the parent ferry and from the egress
// pool, then a ratelimit that takes users' rates from the answers.
func authHTTPConfig(url, parent string) func(addr string) string {
	return chainConfig([]string{"auth", "limit", "log"}, fmt.Sprintf(`[[upstream]]
name = "parent"
url = "socks5://%s"

[[plugin]]
name = "auth"
backend = "http"
url = %q
cache_ttl = "5m"
upstreams = ["parent"]
source_addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
max_failures = 0

[[plugin]]
name = "limit"
type = "ratelimit"
user_from_auth = true

[[plugin]]
name = "log"
`, parent, url))
}

// TestAuthHTTP: 1,000 logins of 10 users through the real binary (HTTP
// requests on keep-alive connections, 8 at a time, each authenticated)
// make one call per user to the auth service within the cache TTL;
// alice, whom the service sends to upstream "parent" from 127.0.0.5,
// goes through the parent ferry (also over SOCKS5), which sees her come
// from that address; the others go direct.
func TestAuthHTTP(t *testing.T) {
	t.Parallel()
	svc := newAuthService(t, map[string]map[string]any{
		"alice": {"groups": []string{"staff"}, "upstream": "parent", "source_address": "127.0.0.5"},
	})
	web := testkit.HTTPTarget(t)
	target := web.Listener.Addr().String()
	parent := startFerry(t, withJSON(""), nil)
	f := startFerry(t, authHTTPConfig(svc.URL, parent.addr), nil)

	const users, perUser, workers = 10, 100, 8
	jobs := make(chan string, users*perUser)
	for i := range users * perUser {
		jobs <- userName(i % users)
	}
	close(jobs)
	clients := map[string]*http.Client{}
	for i := range users {
		clients[userName(i)] = userClient(t, f.addr, userName(i))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for u := range jobs {
				if err := getOK(clients[u], web.URL+"/"); err != nil {
					t.Errorf("%s: %v", u, err)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d logins through ferry in %v: %.0f/s", users*perUser, took.Round(time.Millisecond), float64(users*perUser)/took.Seconds())
	for u, n := range svc.callsOf() {
		if n != 1 {
			t.Errorf("auth service calls for %s: %d, want 1 within the TTL", u, n)
		}
	}
	if n := len(svc.callsOf()); n != users {
		t.Errorf("auth service saw %d users, want %d", n, users)
	}
	// Every request of alice went through the parent (which pools its
	// tunnels, so its own access lines are fewer), the others' direct.
	for _, l := range accessLines(t, f, target, users*perUser) {
		want, groups := "direct", []string(nil)
		if l.str("user") == "alice" {
			want, groups = "parent", []string{"staff"}
		}
		if l.str("upstream") != want || !reflect.DeepEqual(groupsOf(l), groups) {
			t.Fatalf("access line: want upstream %s, groups %q: %v", want, groups, l)
		}
	}
	// The parent logs a channel when it ends: let the kept-alive
	// connections go (the clients', then ferry's to the parent).
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	for _, l := range accessLines(t, parent, target, 1) {
		if host, _, _ := net.SplitHostPort(l.str("client")); host != "127.0.0.5" {
			t.Fatalf("parent's access line: client %q, want alice's 127.0.0.5", l.str("client"))
		}
	}

	// A SOCKS5 login of alice goes through the parent too.
	echo := testkit.EchoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testkit.DialSOCKS5Auth(ctx, f.addr, echo, "alice", "pw-alice")
	if err != nil {
		t.Fatalf("socks5 as alice: %v", err)
	}
	testkit.EchoCheck(t, c)
	c.Close()
	if l := parent.waitLine(t, "access", byTarget(echo)); !strings.HasPrefix(l.str("client"), "127.0.0.5:") {
		t.Fatalf("parent's access line of alice's SOCKS5 tunnel: client %q, want 127.0.0.5", l.str("client"))
	}

	// A wrong password is refused, not cached as a success.
	bad := curl(t, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", "http://"+f.addr, "-U", "alice:nope", web.URL+"/")
	if bad != "407" {
		t.Errorf("wrong password: HTTP %s, want 407", bad)
	}
}

// userName is the i-th user of TestAuthHTTP; user 0 is alice.
func userName(i int) string {
	if i == 0 {
		return "alice"
	}
	return fmt.Sprintf("u%d", i)
}

// getOK GETs url and wants 200, reading the body so the connection is
// reused.
func getOK(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// TestAuthHTTPSource: with the pool 127.0.0.2-127.0.0.5 allowed, the
// service gives user a 127.0.0.3 and user b 127.0.0.4; a target sees
// each user's connections come from that address across 100 SOCKS5
// tunnels, 20 CONNECT tunnels and 3 plain HTTP requests each.
func TestAuthHTTPSource(t *testing.T) {
	t.Parallel()
	want := map[string]netip.Addr{"a": netip.MustParseAddr("127.0.0.3"), "b": netip.MustParseAddr("127.0.0.4")}
	attrs := map[string]map[string]any{}
	for u, src := range want {
		attrs[u] = map[string]any{"source_address": src.String()}
	}
	svc := newAuthService(t, attrs)
	f := startFerry(t, authHTTPConfig(svc.URL, "127.0.0.1:9"), nil)
	target := peerTarget(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, u := range []string{"a", "b"} {
		for i := range 100 {
			if src := peerVia(t, f.addr, target.Addr, u); src != want[u] {
				t.Fatalf("%s's SOCKS5 tunnel %d came from %v, want %v", u, i, src, want[u])
			}
		}
		for i := range 20 {
			c, err := testkit.DialCONNECTAuth(ctx, f.addr, target.Addr, u, "pw-"+u)
			if err != nil {
				t.Fatalf("CONNECT as %s: %v", u, err)
			}
			if src := peerOf(t, c, u); src != want[u] {
				t.Fatalf("%s's CONNECT tunnel %d came from %v, want %v", u, i, src, want[u])
			}
		}
		for i, host := range httpSources(t, f.addr, u, 3) {
			if host != want[u].String() {
				t.Fatalf("%s's plain HTTP request %d came from %s, want %v", u, i, host, want[u])
			}
		}
	}
	l := f.waitLine(t, "access", func(l logLine) bool { return l.str("user") == "b" })
	if l.str("source") != "127.0.0.4" {
		t.Errorf("access line of b: source %q, want 127.0.0.4", l.str("source"))
	}
	if calls := svc.callsOf(); calls["a"] != 1 || calls["b"] != 1 {
		t.Errorf("auth service calls %v, want one per user", calls)
	}
}

// TestAuthHTTPRate: a user whose answer carries a rate of 1 MiB/s down
// downloads 4 MiB in about 3 s (the first MiB is the bucket's burst),
// over CONNECT and over SOCKS5 (two users at once, each with a bucket of
// their own). The window is wide: a loaded machine may be slower, never
// much faster.
func TestAuthHTTPRate(t *testing.T) {
	t.Parallel()
	rate := map[string]any{"rate": map[string]any{"down": 1 << 20}}
	svc := newAuthService(t, map[string]map[string]any{"slow1": rate, "slow2": rate})
	f := startFerry(t, authHTTPConfig(svc.URL, "127.0.0.1:9"), nil)
	tests := []struct {
		name, user string
		dial       func(ctx context.Context, target, user string) (*testkit.BufConn, error)
	}{
		{"connect", "slow1", func(ctx context.Context, target, user string) (*testkit.BufConn, error) {
			return testkit.DialCONNECTAuth(ctx, f.addr, target, user, "pw-"+user)
		}},
		{"socks5", "slow2", func(ctx context.Context, target, user string) (*testkit.BufConn, error) {
			return testkit.DialSOCKS5Auth(ctx, f.addr, target, user, "pw-"+user)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, elapsed := download(t, 4<<20, func(ctx context.Context, target string) (*testkit.BufConn, error) {
				return tt.dial(ctx, target, tt.user)
			})
			t.Logf("4 MiB at the answer's 1 MiB/s down took %v", elapsed)
			if elapsed < 2*time.Second || elapsed > 20*time.Second {
				t.Errorf("download took %v, want about 3s (between 2s and 20s)", elapsed)
			}
		})
	}
}
