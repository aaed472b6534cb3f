package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
)

// service is a fake auth service: answer decides each reply; it counts
// calls and the most in flight at once.
type service struct {
	*httptest.Server
	calls, inFlight, maxInFlight atomic.Int64
	mu                           sync.Mutex
	answer                       func(w http.ResponseWriter, req request)
	last                         request
}

func newService(t testing.TB, tlsOn bool, answer func(w http.ResponseWriter, req request)) *service {
	s := &service{answer: answer}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		n := s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
		}
		var req request
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.last = req
		reply := s.answer
		s.mu.Unlock()
		reply(w, req)
	})
	if tlsOn {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *service) set(answer func(w http.ResponseWriter, req request)) {
	s.mu.Lock()
	s.answer = answer
	s.mu.Unlock()
}

// allowIf answers allow when the password is "pw-" + user, with groups
// and upstream.
func allowIf(groups []string, upstream string) func(http.ResponseWriter, request) {
	return func(w http.ResponseWriter, req request) {
		json.NewEncoder(w).Encode(map[string]any{"allow": req.Password == "pw-"+req.User,
			"groups": groups, "upstream": upstream, "extra": 1})
	}
}

// buildHTTP builds a backend = "http" instance on url with the extra
// settings body (max_failures = 0 unless body sets it), and a clock the
// test moves.
func buildHTTP(t testing.TB, url, body string) (remotePlugin, *atomic.Int64, error) {
	if !strings.Contains(body, "max_failures") {
		body += "max_failures = 0\n"
	}
	src := "[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = [\"auth\"]\n[[plugin]]\nname = \"auth\"\n" +
		"backend = \"http\"\nurl = \"" + url + "\"\n" + body
	cfg, err := config.Parse("t.toml", []byte(src))
	if err != nil {
		return remotePlugin{}, nil, err
	}
	pc := &cfg.Plugins[0]
	svcs := plugins.NewServices()
	p, err := New(plugins.NewEnv("auth", zerolog.Nop(), svcs, pc.Decode))
	if err != nil {
		return remotePlugin{}, nil, pc.WrapError(err)
	}
	t.Cleanup(func() { svcs.Stop(context.Background()) })
	h := p.(remotePlugin)
	var skew atomic.Int64
	h.remote.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	return h, &skew, nil
}

func mustHTTP(t testing.TB, url, body string) (remotePlugin, *atomic.Int64) {
	t.Helper()
	h, skew, err := buildHTTP(t, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return h, skew
}

func httpSession() *plugins.Session {
	return &plugins.Session{ID: "t1", Listener: "l1", Target: "example.com:443", Protocol: "http",
		Client: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}}
}

func TestHTTPConfigErrors(t *testing.T) {
	tests := []struct{ name, url, body, want string }{
		{"plain http to a name", "http://auth.example/check", "", "plugin[0].url: http:// only to a loopback IP address"},
		{"plain http off loopback", "http://192.0.2.1/check", "", "url: http:// only to a loopback"},
		{"other scheme", "ftp://127.0.0.1/", "", "url: want https://, not ftp://"},
		{"credentials", "https://u:p@auth.example/", "", "url: must not hold credentials"},
		{"no url", "", "", "url: required"},
		{"users too", "https://auth.example/", "users = { a = \"plain:x\" }\n", "backend: users and htpasswd do not apply"},
		{"bad policy", "https://auth.example/", "on_backend_error = \"allow\"\n", `on_backend_error: want "refuse" or "grace", not "allow"`},
		{"grace without policy", "https://auth.example/", "grace_period = \"1m\"\n", "grace_period: only applies with"},
		{"zero timeout", "https://auth.example/", "timeout = \"0s\"\n", "timeout: must be more than 0s"},
		{"zero concurrency", "https://auth.example/", "max_concurrent = 0\n", "max_concurrent: must be 1 to 1024"},
		{"negative ttl", "https://auth.example/", "negative_cache_ttl = \"-1s\"\n", `negative_cache_ttl: invalid duration "-1s": must not be negative`},
		{"missing ca", "https://auth.example/", "ca_file = \"/nonexistent/ca.pem\"\n", "ca_file: open /nonexistent/ca.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := buildHTTP(t, tt.url, tt.body)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := build(t, "users = { a = \"plain:x\" }\nurl = \"https://a.example/\"\n", nil); err == nil ||
		!strings.Contains(err.Error(), "need backend = \"http\"") {
		t.Errorf("url without backend: got %v", err)
	}
	if _, err := build(t, "users = { a = \"plain:x\" }\nbackend = \"ldap\"\n", nil); err == nil ||
		!strings.Contains(err.Error(), `backend: want "htpasswd" or "http", not "ldap"`) {
		t.Errorf("unknown backend: got %v", err)
	}
}

func TestHTTPAnswers(t *testing.T) {
	big := `{"allow":true,"pad":"` + strings.Repeat("x", maxAnswer) + `"}`
	tests := []struct {
		name     string
		answer   func(http.ResponseWriter, request)
		pass     string
		wantErr  bool
		backend  bool // a backend error, not a denial
		groups   []string
		upstream string
	}{
		{name: "allow", answer: allowIf(nil, ""), pass: "pw-alice"},
		{name: "deny", answer: allowIf(nil, ""), pass: "wrong", wantErr: true},
		{name: "groups", answer: allowIf([]string{"staff", "ops", "staff"}, ""), pass: "pw-alice", groups: []string{"ops", "staff"}},
		{name: "upstream", answer: allowIf(nil, "office"), pass: "pw-alice", upstream: "office"},
		{name: "unknown upstream", answer: allowIf(nil, "elsewhere"), pass: "pw-alice", wantErr: true, backend: true},
		{name: "bad group", answer: allowIf([]string{"a b"}, ""), pass: "pw-alice", wantErr: true, backend: true},
		{name: "500", answer: func(w http.ResponseWriter, _ request) { http.Error(w, "down", 500) }, pass: "pw-alice", wantErr: true, backend: true},
		{name: "403", answer: func(w http.ResponseWriter, _ request) { http.Error(w, "no", 403) }, pass: "pw-alice", wantErr: true, backend: true},
		{name: "malformed", answer: func(w http.ResponseWriter, _ request) { w.Write([]byte(`{"allow":tru`)) }, pass: "pw-alice", wantErr: true, backend: true},
		{name: "no allow", answer: func(w http.ResponseWriter, _ request) { w.Write([]byte(`{"groups":[]}`)) }, pass: "pw-alice", wantErr: true, backend: true},
		{name: "oversized", answer: func(w http.ResponseWriter, _ request) { w.Write([]byte(big)) }, pass: "pw-alice", wantErr: true, backend: true},
		{name: "timeout", answer: func(w http.ResponseWriter, r request) {
			time.Sleep(300 * time.Millisecond)
			allowIf(nil, "")(w, r)
		}, pass: "pw-alice", wantErr: true, backend: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService(t, false, tt.answer)
			h, _ := mustHTTP(t, svc.URL, "timeout = \"100ms\"\nupstreams = [\"office\"]\n")
			s := httpSession()
			err := h.Authenticate(context.Background(), s, "alice", tt.pass)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Authenticate: %v, want error %v", err, tt.wantErr)
			}
			if got := h.Counts().BackendErrors == 1; got != tt.backend {
				t.Errorf("backend error counted: %v, want %v (%+v)", got, tt.backend, h.Counts())
			}
			if !reflect.DeepEqual(s.Groups, tt.groups) {
				t.Errorf("groups %q, want %q", s.Groups, tt.groups)
			}
			up, _ := s.Value(upstreamKey{}).(string)
			if up != tt.upstream {
				t.Errorf("upstream %q, want %q", up, tt.upstream)
			}
			if err == nil {
				s.User = "alice"
				if h.OnConnect(context.Background(), s); s.Upstream != tt.upstream {
					t.Errorf("OnConnect upstream %q, want %q", s.Upstream, tt.upstream)
				}
			}
		})
	}
}

// TestHTTPRequest: the JSON ferry sends, over https with ca_file.
func TestHTTPRequest(t *testing.T) {
	svc := newService(t, true, allowIf(nil, ""))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: svc.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	h, _ := mustHTTP(t, svc.URL, fmt.Sprintf("ca_file = %q\n", ca))
	if err := h.Authenticate(context.Background(), httpSession(), "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	want := request{User: "alice", Password: "pw-alice", Client: "192.0.2.7:40000", Listener: "l1", Target: "example.com:443"}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if svc.last != want {
		t.Errorf("request %+v, want %+v", svc.last, want)
	}
	// Without ca_file the service's certificate is not trusted.
	h2, _ := mustHTTP(t, svc.URL, "")
	if err := h2.Authenticate(context.Background(), httpSession(), "alice", "pw-alice"); err == nil {
		t.Error("untrusted certificate: admitted")
	}
}

// TestHTTPCache: an allow is reused for cache_ttl and a deny for
// negative_cache_ttl; then the service is asked again.
func TestHTTPCache(t *testing.T) {
	svc := newService(t, false, allowIf([]string{"g"}, ""))
	h, skew := mustHTTP(t, svc.URL, "cache_ttl = \"1m\"\nnegative_cache_ttl = \"5s\"\n")
	steps := []struct {
		pass      string
		advance   time.Duration
		wantErr   bool
		wantCalls int64
	}{
		{"pw-alice", 0, false, 1},
		{"pw-alice", 30 * time.Second, false, 1},
		{"pw-alice", 31 * time.Second, false, 2}, // past the TTL
		{"bad", 0, true, 3},
		{"bad", 4 * time.Second, true, 3}, // negative cache
		{"bad", 2 * time.Second, true, 4}, // past it
		{"pw-alice", 0, false, 4},         // the allow is still fresh
	}
	for i, st := range steps {
		skew.Add(int64(st.advance))
		s := httpSession()
		err := h.Authenticate(context.Background(), s, "alice", st.pass)
		if (err != nil) != st.wantErr || svc.calls.Load() != st.wantCalls {
			t.Fatalf("step %d: err %v, calls %d; want error %v, calls %d", i, err, svc.calls.Load(), st.wantErr, st.wantCalls)
		}
		if err == nil && !reflect.DeepEqual(s.Groups, []string{"g"}) {
			t.Errorf("step %d: groups %q", i, s.Groups)
		}
	}
}

// TestHTTPBackendErrorPolicy: with "grace" a login whose last allow is
// within grace_period is admitted while the service fails; with
// "refuse", or past the grace period, it is refused.
func TestHTTPBackendErrorPolicy(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		advance time.Duration // after the allow, with the service down
		admit   bool
	}{
		{"grace within", "on_backend_error = \"grace\"\ngrace_period = \"10m\"\n", 5 * time.Minute, true},
		{"grace past", "on_backend_error = \"grace\"\ngrace_period = \"10m\"\n", 11 * time.Minute, false},
		{"refuse", "on_backend_error = \"refuse\"\n", 5 * time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService(t, false, allowIf([]string{"g"}, ""))
			h, skew := mustHTTP(t, svc.URL, tt.body)
			if err := h.Authenticate(context.Background(), httpSession(), "alice", "pw-alice"); err != nil {
				t.Fatal(err)
			}
			svc.set(func(w http.ResponseWriter, _ request) { http.Error(w, "down", 503) })
			skew.Add(int64(tt.advance))
			s := httpSession()
			err := h.Authenticate(context.Background(), s, "alice", "pw-alice")
			if (err == nil) != tt.admit {
				t.Fatalf("admitted %v, want %v (%v)", err == nil, tt.admit, err)
			}
			c := h.Counts()
			if c.BackendErrors != 1 || (c.Grace == 1) != tt.admit || c.Failures != 0 {
				t.Errorf("counts %+v", c)
			}
			if tt.admit && !reflect.DeepEqual(s.Groups, []string{"g"}) {
				t.Errorf("grace login groups %q", s.Groups)
			}
			// Another password is never admitted on grace.
			if err := h.Authenticate(context.Background(), httpSession(), "alice", "other"); err == nil {
				t.Error("other password admitted on grace")
			}
		})
	}
}

// TestHTTPSharedCall: concurrent logins of one user make one call.
func TestHTTPSharedCall(t *testing.T) {
	release := make(chan struct{})
	svc := newService(t, false, func(w http.ResponseWriter, r request) {
		<-release
		allowIf(nil, "")(w, r)
	})
	h, _ := mustHTTP(t, svc.URL, "")
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() { errs <- h.Authenticate(context.Background(), httpSession(), "alice", "pw-alice") }()
	}
	for deadline := time.Now().Add(5 * time.Second); svc.calls.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the others join the flight
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if c := svc.calls.Load(); c != 1 {
		t.Errorf("calls %d, want 1", c)
	}
}

// TestHTTPConcurrencyBound: at most max_concurrent calls are in flight;
// a login that waits past the timeout for a slot fails.
func TestHTTPConcurrencyBound(t *testing.T) {
	svc := newService(t, false, func(w http.ResponseWriter, r request) {
		time.Sleep(30 * time.Millisecond)
		allowIf(nil, "")(w, r)
	})
	h, _ := mustHTTP(t, svc.URL, "max_concurrent = 2\ntimeout = \"5s\"\n")
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			u := fmt.Sprintf("u%d", i)
			if err := h.Authenticate(context.Background(), httpSession(), u, "pw-"+u); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if m := svc.maxInFlight.Load(); m > 2 || svc.calls.Load() != 10 {
		t.Errorf("max in flight %d (want <= 2), calls %d", m, svc.calls.Load())
	}

	slow := newService(t, false, func(w http.ResponseWriter, r request) {
		time.Sleep(400 * time.Millisecond)
		allowIf(nil, "")(w, r)
	})
	h, _ = mustHTTP(t, slow.URL, "max_concurrent = 1\ntimeout = \"200ms\"\n")
	first := make(chan error, 1)
	go func() { first <- h.Authenticate(context.Background(), httpSession(), "a", "pw-a") }()
	for deadline := time.Now().Add(5 * time.Second); slow.calls.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	err := h.Authenticate(context.Background(), httpSession(), "b", "pw-b")
	if err == nil || h.Counts().BackendErrors == 0 {
		t.Errorf("second login past the bound: %v, counts %+v", err, h.Counts())
	}
	if err := <-first; err == nil {
		t.Error("first login outlived its 200ms timeout")
	}
}

// TestHTTPSocksUpstream: a SOCKS5 login authenticates a provisional
// session; OnConnect finds the upstream by user name.
func TestHTTPSocksUpstream(t *testing.T) {
	svc := newService(t, false, allowIf(nil, "office"))
	h, _ := mustHTTP(t, svc.URL, "upstreams = [\"office\"]\n")
	if err := h.Authenticate(context.Background(), httpSession(), "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	s := &plugins.Session{User: "alice"}
	h.OnConnect(context.Background(), s)
	if s.Upstream != "office" {
		t.Errorf("upstream %q, want office", s.Upstream)
	}
	other := &plugins.Session{User: "bob"}
	if h.OnConnect(context.Background(), other); other.Upstream != "" {
		t.Errorf("bob's upstream %q, want none", other.Upstream)
	}
}

// BenchmarkHTTPCached is a login with a warm cache.
func BenchmarkHTTPCached(b *testing.B) {
	svc := newService(b, false, allowIf([]string{"g"}, ""))
	h, _ := mustHTTP(b, svc.URL, "")
	s := httpSession()
	if err := h.Authenticate(context.Background(), s, "alice", "pw-alice"); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		s := httpSession()
		for pb.Next() {
			if err := h.Authenticate(context.Background(), s, "alice", "pw-alice"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
}

// TestHTTPOutageLog: while the service fails, one line a second is
// logged, not one per login; the password never is.
func TestHTTPOutageLog(t *testing.T) {
	svc := newService(t, false, func(w http.ResponseWriter, _ request) { http.Error(w, "down", 500) })
	h, _ := mustHTTP(t, svc.URL, "")
	var logs bytes.Buffer
	h.log = zerolog.New(&lockedWriter{w: &logs})
	for i := range 20 {
		if err := h.Authenticate(context.Background(), httpSession(), "alice", fmt.Sprint("secret-", i)); err == nil {
			t.Fatal("admitted while the service fails")
		}
	}
	out := logs.String()
	if n := strings.Count(out, `"message":"auth backend failed`); n != 1 || strings.Contains(out, "secret-") {
		t.Errorf("%d outage lines, want 1 (and no password): %s", n, out)
	}
	if c := h.Counts(); c.BackendErrors != 20 || c.Calls != 20 || c.Failures != 0 {
		t.Errorf("counts %+v", c)
	}
}
