package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"ferry/test/testkit"
)

// authService is an auth service for backend = "http" on loopback: it
// allows a user whose password is "pw-" + the name, sends alice through
// upstream "parent" with group staff, and counts its calls per user.
type authService struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string]int
}

func newAuthService(t *testing.T) *authService {
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
		ans := map[string]any{"allow": req.Password == "pw-"+req.User}
		if req.User == "alice" {
			ans["groups"], ans["upstream"] = []string{"staff"}, "parent"
		}
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
// url, which may send users through the parent ferry.
func authHTTPConfig(url, parent string) func(addr string) string {
	return chainConfig([]string{"auth", "log"}, fmt.Sprintf(`[[upstream]]
name = "parent"
url = "socks5://%s"

[[plugin]]
name = "auth"
backend = "http"
url = %q
cache_ttl = "5m"
upstreams = ["parent"]
max_failures = 0

[[plugin]]
name = "log"
`, parent, url))
}

// TestAuthHTTP: 1,000 logins of 10 users through the real binary (HTTP
// requests on keep-alive connections, 8 at a time, each authenticated)
// make one call per user to the auth service within the cache TTL;
// alice, whom the service sends to upstream "parent", goes through the
// parent ferry (also over SOCKS5), the others direct.
func TestAuthHTTP(t *testing.T) {
	t.Parallel()
	svc := newAuthService(t)
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
	accessLines(t, parent, target, 1)

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
	parent.waitLine(t, "access", byTarget(echo))

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
