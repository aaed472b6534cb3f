package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
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
	return allowWith(map[string]any{"groups": groups, "upstream": upstream, "extra": 1})
}

// allowWith answers allow when the password is "pw-" + user, with the
// other fields of fields.
func allowWith(fields map[string]any) func(http.ResponseWriter, request) {
	return func(w http.ResponseWriter, req request) {
		ans := maps.Clone(fields)
		if ans == nil {
			ans = map[string]any{}
		}
		ans["allow"] = req.Password == "pw-"+req.User
		json.NewEncoder(w).Encode(ans)
	}
}

// buildHTTP builds a backend = "http" instance on url with the extra
// settings body (max_failures = 0 unless body sets it), and a clock the
// test moves.
func buildHTTP(t testing.TB, url, body string) (remotePlugin, *atomic.Int64, error) {
	if !strings.Contains(body, "max_failures") {
		body += "max_failures = 0\n"
	}
	src := "[[upstream]]\nname = \"office\"\nurl = \"socks5://127.0.0.1:1\"\n" +
		"[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = [\"auth\"]\n[[plugin]]\nname = \"auth\"\n" +
		"backend = \"http\"\nurl = \"" + url + "\"\n" + body
	cfg, err := config.Parse("t.toml", []byte(src))
	if err != nil {
		return remotePlugin{}, nil, err
	}
	pc := &cfg.Plugins[0]
	svcs := plugins.NewServices()
	env := plugins.NewEnv("auth", zerolog.Nop(), svcs, pc.Decode)
	env.Upstreams = []string{cfg.Upstreams[0].Name}
	p, err := New(env)
	if err != nil {
		return remotePlugin{}, nil, pc.WrapError(err)
	}
	if err := svcs.Start(context.Background()); err != nil {
		return remotePlugin{}, nil, err
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
	if _, err := build(t, "users = { a = \"plain:x\" }\nbackend = \"radius\"\n", nil); err == nil ||
		!strings.Contains(err.Error(), `backend: want "htpasswd", "http" or "ldap", not "radius"`) {
		t.Errorf("unknown backend: got %v", err)
	}
}

// TestHTTPAllowListErrors: every bad entry of upstreams and
// source_addresses is reported at once, at its position.
func TestHTTPAllowListErrors(t *testing.T) {
	_, _, err := buildHTTP(t, "http://127.0.0.1:9/", "upstreams = [\"office\", \"nowhere\", \"office\", \"\", \"direct\"]\n"+
		"source_addresses = [\"127.0.0.2\", \"192.0.2.1\", \"eth0\", \"0.0.0.0\", \"127.0.0.2\", \"::1\"]\n")
	want := `t.toml:11:24: plugin[0].upstreams[1]: no [[upstream]] named "nowhere"
t.toml:11:35: plugin[0].upstreams[2]: "office" is listed twice
t.toml:11:45: plugin[0].upstreams[3]: empty upstream name
t.toml:12:34: plugin[0].source_addresses[1]: 192.0.2.1 is not assigned to this host (only its interfaces' addresses, 127.0.0.0/8 and ::1 can be bound)
t.toml:12:47: plugin[0].source_addresses[2]: invalid address "eth0": want an IP address, like "192.0.2.10" or "2001:db8::10"
t.toml:12:55: plugin[0].source_addresses[3]: 0.0.0.0 is unspecified: name one address of this host
t.toml:12:66: plugin[0].source_addresses[4]: 127.0.0.2 is listed twice`
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}

func TestHTTPAnswers(t *testing.T) {
	big := `{"allow":true,"pad":"` + strings.Repeat("x", maxAnswer) + `"}`
	raw := func(body string) func(http.ResponseWriter, request) {
		return func(w http.ResponseWriter, _ request) { w.Write([]byte(body)) }
	}
	tests := []struct {
		name    string
		answer  func(http.ResponseWriter, request)
		pass    string
		wantErr bool
		backend bool // a backend error, not a denial
		groups  []string
		want    attrs // the session's upstream, source and rate
	}{
		{name: "allow", answer: allowIf(nil, ""), pass: "pw-alice"},
		{name: "deny", answer: allowIf(nil, ""), pass: "wrong", wantErr: true},
		{name: "groups", answer: allowIf([]string{"staff", "ops", "staff"}, ""), pass: "pw-alice", groups: []string{"ops", "staff"}},
		{name: "upstream", answer: allowIf(nil, "office"), pass: "pw-alice", want: attrs{upstream: "office"}},
		{name: "upstream direct", answer: allowIf(nil, "direct"), pass: "pw-alice", want: attrs{upstream: "direct"}},
		{name: "unknown upstream", answer: allowIf(nil, "elsewhere"), pass: "pw-alice", wantErr: true, backend: true},
		{name: "source", answer: allowWith(map[string]any{"source_address": "127.0.0.3"}), pass: "pw-alice",
			want: attrs{source: netip.MustParseAddr("127.0.0.3")}},
		{name: "source IPv4-mapped", answer: allowWith(map[string]any{"source_address": "::ffff:127.0.0.3"}), pass: "pw-alice",
			want: attrs{source: netip.MustParseAddr("127.0.0.3")}},
		{name: "source not allowed", answer: allowWith(map[string]any{"source_address": "127.0.0.9"}), pass: "pw-alice", wantErr: true, backend: true},
		{name: "source not an address", answer: allowWith(map[string]any{"source_address": "eth0"}), pass: "pw-alice", wantErr: true, backend: true},
		{name: "source with a zone", answer: allowWith(map[string]any{"source_address": "fe80::1%lo"}), pass: "pw-alice", wantErr: true, backend: true},
		{name: "deny with a bad source", answer: allowWith(map[string]any{"source_address": "eth0", "rate": map[string]any{"up": -1}}), pass: "wrong", wantErr: true},
		{name: "rate", answer: allowWith(map[string]any{"rate": map[string]any{"up": 1024, "down": 4096}}), pass: "pw-alice",
			want: attrs{rate: &plugins.Rate{Up: 1024, Down: 4096}}},
		{name: "rate one way", answer: allowWith(map[string]any{"rate": map[string]any{"down": 4096}}), pass: "pw-alice",
			want: attrs{rate: &plugins.Rate{Down: 4096}}},
		{name: "rate unlimited", answer: allowWith(map[string]any{"rate": map[string]any{}}), pass: "pw-alice",
			want: attrs{rate: &plugins.Rate{}}},
		{name: "rate negative", answer: allowWith(map[string]any{"rate": map[string]any{"down": -1}}), pass: "pw-alice", wantErr: true, backend: true},
		{name: "rate too high", answer: allowWith(map[string]any{"rate": map[string]any{"up": maxRate + 1}}), pass: "pw-alice", wantErr: true, backend: true},
		{name: "rate fraction", answer: raw(`{"allow":true,"rate":{"up":1.5}}`), pass: "pw-alice", wantErr: true, backend: true},
		{name: "rate a number", answer: raw(`{"allow":true,"rate":1024}`), pass: "pw-alice", wantErr: true, backend: true},
		{name: "rate huge", answer: raw(`{"allow":true,"rate":{"up":1e300}}`), pass: "pw-alice", wantErr: true, backend: true},
		{name: "everything", answer: allowWith(map[string]any{"upstream": "office", "source_address": "127.0.0.2",
			"rate": map[string]any{"up": 1, "down": 2}}), pass: "pw-alice",
			want: attrs{upstream: "office", source: netip.MustParseAddr("127.0.0.2"), rate: &plugins.Rate{Up: 1, Down: 2}}},
		{name: "bad group", answer: allowIf([]string{"a b"}, ""), pass: "pw-alice", wantErr: true, backend: true},
		{name: "500", answer: func(w http.ResponseWriter, _ request) { http.Error(w, "down", 500) }, pass: "pw-alice", wantErr: true, backend: true},
		{name: "403", answer: func(w http.ResponseWriter, _ request) { http.Error(w, "no", 403) }, pass: "pw-alice", wantErr: true, backend: true},
		{name: "malformed", answer: raw(`{"allow":tru`), pass: "pw-alice", wantErr: true, backend: true},
		{name: "no allow", answer: raw(`{"groups":[]}`), pass: "pw-alice", wantErr: true, backend: true},
		{name: "oversized", answer: raw(big), pass: "pw-alice", wantErr: true, backend: true},
		{name: "timeout", answer: func(w http.ResponseWriter, r request) {
			time.Sleep(1500 * time.Millisecond)
			allowIf(nil, "")(w, r)
		}, pass: "pw-alice", wantErr: true, backend: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService(t, false, tt.answer)
			// A timeout a loaded machine's TLS handshake fits in; the
			// "timeout" answer takes longer.
			h, _ := mustHTTP(t, svc.URL, "timeout = \"1s\"\nupstreams = [\"office\", \"direct\"]\n"+
				"source_addresses = [\"127.0.0.2\", \"127.0.0.3\"]\n")
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
			if err != nil {
				if s.Value(attrsKey{}) != nil {
					t.Errorf("refused login has attributes %+v", s.Value(attrsKey{}))
				}
				return
			}
			s.User = "alice"
			h.OnConnect(context.Background(), s)
			got := attrs{upstream: s.Upstream, source: s.SourceAddr, rate: s.UserRate}
			if got.upstream != tt.want.upstream || got.source != tt.want.source || !reflect.DeepEqual(got.rate, tt.want.rate) {
				t.Errorf("OnConnect: upstream %q source %v rate %+v; want %q %v %+v",
					got.upstream, got.source, got.rate, tt.want.upstream, tt.want.source, tt.want.rate)
			}
		})
	}
}

// TestHTTPAttrsKeepChoices: an upstream and source address an earlier
// plugin chose stay; the answer's rate still applies.
func TestHTTPAttrsKeepChoices(t *testing.T) {
	svc := newService(t, false, allowWith(map[string]any{"upstream": "office", "source_address": "127.0.0.2",
		"rate": map[string]any{"down": 10}}))
	h, _ := mustHTTP(t, svc.URL, "upstreams = [\"office\"]\nsource_addresses = [\"127.0.0.2\"]\n")
	s := httpSession()
	if err := h.Authenticate(context.Background(), s, "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	s.User, s.Upstream, s.SourceAddr = "alice", "direct", netip.MustParseAddr("127.0.0.7")
	h.OnConnect(context.Background(), s)
	if s.Upstream != "direct" || s.SourceAddr.String() != "127.0.0.7" || s.UserRate == nil || s.UserRate.Down != 10 {
		t.Errorf("upstream %q source %v rate %+v; want direct, 127.0.0.7 and down 10", s.Upstream, s.SourceAddr, s.UserRate)
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
// negative_cache_ttl (for the client it was given to only); then the
// service is asked again.
func TestHTTPCache(t *testing.T) {
	svc := newService(t, false, allowIf([]string{"g"}, ""))
	h, skew := mustHTTP(t, svc.URL, "cache_ttl = \"1m\"\nnegative_cache_ttl = \"5s\"\n")
	other := net.IPv4(198, 51, 100, 9)
	steps := []struct {
		pass      string
		advance   time.Duration
		client    net.IP // nil: httpSession's
		wantErr   bool
		wantCalls int64
	}{
		{"pw-alice", 0, nil, false, 1},
		{"pw-alice", 30 * time.Second, nil, false, 1},
		{"pw-alice", 31 * time.Second, nil, false, 2}, // past the TTL
		{"pw-alice", 0, other, false, 2},              // an allow serves every client
		{"bad", 0, nil, true, 3},
		{"bad", 4 * time.Second, nil, true, 3}, // negative cache
		{"bad", 0, other, true, 4},             // a deny only its client
		{"bad", 2 * time.Second, nil, true, 5}, // past it
		{"pw-alice", 0, nil, false, 5},         // the allow is still fresh
	}
	for i, st := range steps {
		skew.Add(int64(st.advance))
		s := httpSession()
		if st.client != nil {
			s.Client = &net.TCPAddr{IP: st.client, Port: 40000}
		}
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

// TestHTTPStopClosesInFlight: stopping the backend closes a connection
// whose answer is still awaited, not only the idle ones, and later
// logins dial nothing.
func TestHTTPStopClosesInFlight(t *testing.T) {
	release := make(chan struct{})
	svc := newService(t, false, func(w http.ResponseWriter, r request) {
		<-release
		allowIf(nil, "")(w, r)
	})
	defer close(release)
	h, _ := mustHTTP(t, svc.URL, "timeout = \"1m\"\n")
	done := make(chan error, 1)
	go func() { done <- h.Authenticate(context.Background(), httpSession(), "a", "pw-a") }()
	for deadline := time.Now().Add(5 * time.Second); svc.inFlight.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the login did not reach the service")
		}
	}
	if err := (stopRemote{r: h.remote}).Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("the login in flight was allowed after the stop")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the login in flight still waits 5s after the stop: its connection was left open")
	}
	calls := svc.calls.Load()
	if err := h.Authenticate(context.Background(), httpSession(), "b", "pw-b"); err == nil {
		t.Error("a login after the stop was allowed")
	}
	if n := svc.calls.Load(); n != calls {
		t.Errorf("a login after the stop reached the service (%d calls, want %d)", n, calls)
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

// TestHTTPSocksAttrs: a SOCKS5 login authenticates a provisional
// session with the id the session will have; that session's OnConnect
// takes the login's attributes by id, once. Other sessions of the user
// (a later one, an HTTP one without its own login) get none.
func TestHTTPSocksAttrs(t *testing.T) {
	svc := newService(t, false, allowWith(map[string]any{"upstream": "office", "source_address": "127.0.0.3",
		"rate": map[string]any{"up": 5, "down": 6}}))
	h, _ := mustHTTP(t, svc.URL, "upstreams = [\"office\"]\nsource_addresses = [\"127.0.0.3\"]\n")
	probe := &plugins.Session{ID: "42", Protocol: "socks5"}
	if err := h.Authenticate(context.Background(), probe, "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		s    *plugins.Session
		want bool
	}{
		{"its session", &plugins.Session{ID: "42", User: "alice", Protocol: "socks5"}, true},
		{"its session again", &plugins.Session{ID: "42", User: "alice", Protocol: "socks5"}, false},
		{"another socks5 session", &plugins.Session{ID: "43", User: "alice", Protocol: "socks5"}, false},
		{"an http session", &plugins.Session{ID: "42", User: "alice", Protocol: "connect"}, false},
	}
	for _, tt := range tests {
		h.OnConnect(context.Background(), tt.s)
		got := tt.s.Upstream == "office" && tt.s.SourceAddr.String() == "127.0.0.3" && tt.s.UserRate != nil && *tt.s.UserRate == plugins.Rate{Up: 5, Down: 6}
		none := tt.s.Upstream == "" && !tt.s.SourceAddr.IsValid() && tt.s.UserRate == nil
		if got != tt.want || (!tt.want && !none) {
			t.Errorf("%s: upstream %q source %v rate %+v; want the login's: %v", tt.name, tt.s.Upstream, tt.s.SourceAddr, tt.s.UserRate, tt.want)
		}
	}
	// A UDP association's session takes its login's attributes too.
	probe = &plugins.Session{ID: "44", Protocol: "socks5"}
	if err := h.Authenticate(context.Background(), probe, "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	udp := &plugins.Session{ID: "44", User: "alice", Protocol: plugins.ProtocolSOCKS5UDP}
	if h.OnConnect(context.Background(), udp); udp.Upstream != "office" {
		t.Errorf("UDP association: upstream %q, want office", udp.Upstream)
	}
	// A session refused before its OnConnect lets its login's go.
	probe = &plugins.Session{ID: "45", Protocol: "socks5"}
	if err := h.Authenticate(context.Background(), probe, "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	h.OnClose(&plugins.Session{ID: "45", User: "alice", Protocol: "socks5"}, plugins.Stats{})
	if _, ok := h.remote.pending.get("45"); ok {
		t.Error("attributes of a closed session kept")
	}
}

// TestPendingBound: logins whose session never comes are dropped with
// the oldest; the recent ones are kept.
func TestPendingBound(t *testing.T) {
	g := newGens[string, attrs](8)
	for i := range 100 {
		g.put(fmt.Sprint(i), attrs{upstream: "u"})
	}
	if n := len(g.cur) + len(g.old); n > 8 {
		t.Errorf("%d entries, want at most 8", n)
	}
	if _, ok := g.take("99"); !ok {
		t.Error("the newest entry was dropped")
	}
	if _, ok := g.take("0"); ok {
		t.Error("the oldest entry was kept")
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
