package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"ferry/plugins"
	"ferry/test/testkit"
)

// gate authenticates alice/secret, refuses dials to one port and tags
// plain HTTP requests.
type gate struct {
	name     string
	denyPort uint16
}

func (g *gate) Name() string  { return g.name }
func (g *gate) Realm() string { return "test realm" }
func (g *gate) Authenticate(_ context.Context, _ *plugins.Session, user, pass string) error {
	if user == "alice" && pass == "secret" {
		return nil
	}
	return errors.New("bad credentials")
}
func (g *gate) OnDial(_ *plugins.Session, ap netip.AddrPort) error {
	if ap.Port() == g.denyPort {
		return plugins.Reject(plugins.CodeForbidden, "port denied at dial time")
	}
	return nil
}
func (g *gate) OnHTTPRequest(s *plugins.Session, req *http.Request) error {
	req.Header.Set("X-Ferry-User", s.User)
	if req.URL.Path == "/forbidden" {
		return plugins.Reject(plugins.CodeForbidden, "path denied")
	}
	return nil
}

var (
	_ plugins.Authenticator = (*gate)(nil)
	_ plugins.DialChecker   = (*gate)(nil)
	_ plugins.HTTPRequester = (*gate)(nil)
)

func init() {
	plugins.Register(plugins.Registration{
		Type: "gate", Description: "server tests only",
		New: func(env plugins.Env) (plugins.Plugin, error) {
			var cfg struct {
				DenyPort uint16 `toml:"deny_port"`
			}
			if err := env.Decode(&cfg); err != nil {
				return nil, err
			}
			return &gate{name: env.Name, denyPort: cfg.DenyPort}, nil
		},
	})
}

func gateConfig(denyPort uint16) string {
	return fmt.Sprintf(`
[[listener]]
listen = "127.0.0.1:0"
plugins = ["gate", "log"]
[[plugin]]
name = "gate"
deny_port = %d
[[plugin]]
name = "log"
`, denyPort)
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestAuthHTTP(t *testing.T) {
	web := httpServer(t)
	f := start(t, gateConfig(1))
	tests := []struct {
		name, method, auth string
		wantStatus         int
	}{
		{"connect without credentials", "CONNECT", "", 407},
		{"connect wrong password", "CONNECT", basic("alice", "nope"), 407},
		{"connect right", "CONNECT", basic("alice", "secret"), 200},
		{"get without credentials", "GET", "", 407},
		{"get right", "GET", basic("alice", "secret"), 200},
		{"get bearer", "GET", "Bearer x", 407},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, f.addr)
			target := web
			if tt.method == "GET" {
				target = "http://" + web + "/x"
			}
			hdr := ""
			if tt.auth != "" {
				hdr = "Proxy-Authorization: " + tt.auth + "\r\n"
			}
			fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", tt.method, target, web, hdr)
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: tt.method})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == 407 {
				if got := resp.Header.Get("Proxy-Authenticate"); got != `Basic realm="test realm"` {
					t.Fatalf("Proxy-Authenticate: got %q", got)
				}
			}
		})
	}
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"user":"alice"`) })
}

// A refused SOCKS5 login gets an access line, as a refused HTTP login
// does: reason rejected, the user tried, and the id the auth plugins saw.
func TestSOCKS5FailedLoginAccessLine(t *testing.T) {
	f := start(t, gateConfig(1))
	c := dial(t, f.addr)
	c.Write([]byte{5, 1, 2, 1, 3, 'b', 'o', 'b', 2, 'p', 'w'})
	var b [4]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b != [4]byte{5, 2, 1, 1} {
		t.Fatalf("method and auth status: got %x %v, want 05020101", b, err)
	}
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"message":"access"`) })
	var access map[string]any
	for line := range strings.SplitSeq(f.logs.String(), "\n") {
		if strings.Contains(line, `"message":"access"`) {
			if err := json.Unmarshal([]byte(line), &access); err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, want := range map[string]string{"proto": "socks5", "reason": "rejected"} {
		if got, _ := access[k].(string); got != want {
			t.Errorf("access %s = %q, want %q: %v", k, got, want, access)
		}
	}
	if e, _ := access["error"].(string); !strings.Contains(e, `"bob"`) {
		t.Errorf("access error %q does not name the user tried: %v", e, access)
	}
	if id, _ := access["id"].(string); id == "" {
		t.Errorf("access line without an id: %v", access)
	}
	if strings.Contains(f.logs.String(), `"id":""`) {
		t.Errorf("a line with an empty id:\n%s", f.logs.String())
	}
	if got := f.obs.handshakes("socks5", "rejected"); got != 1 {
		t.Errorf("handshakes{socks5,rejected} = %d, want 1", got)
	}
}

func TestAuthSOCKS(t *testing.T) {
	echo := testkit.EchoServer(t)
	_, port := splitPort(t, echo)
	f := start(t, gateConfig(1))
	auth := func(user, pass string) []byte {
		b := []byte{1, byte(len(user))}
		b = append(b, user...)
		b = append(b, byte(len(pass)))
		return append(b, pass...)
	}
	t.Run("no-auth only is refused", func(t *testing.T) {
		c := dial(t, f.addr)
		c.Write([]byte{5, 1, 0})
		var b [2]byte
		io.ReadFull(c, b[:])
		if b != [2]byte{5, 0xFF} {
			t.Fatalf("got %x, want 05ff", b)
		}
	})
	for _, tt := range []struct {
		name, user, pass string
		ok               bool
	}{{"right", "alice", "secret", true}, {"wrong", "alice", "x", false}, {"unknown", "bob", "secret", false}} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, f.addr)
			c.Write([]byte{5, 2, 0, 2})
			var b [2]byte
			if _, err := io.ReadFull(c, b[:]); err != nil || b != [2]byte{5, 2} {
				t.Fatalf("method: got %x %v, want 0502", b, err)
			}
			c.Write(auth(tt.user, tt.pass))
			if _, err := io.ReadFull(c, b[:]); err != nil {
				t.Fatal(err)
			}
			if (b == [2]byte{1, 0}) != tt.ok {
				t.Fatalf("auth status: got %x, want ok=%v", b, tt.ok)
			}
			if !tt.ok {
				if _, err := c.Read(b[:]); err == nil {
					t.Fatal("connection still open after failed auth")
				}
				return
			}
			req := socks5Request("127.0.0.1", port, 1)[3:] // without the greeting
			c.Write(req)
			var r [10]byte
			if _, err := io.ReadFull(c, r[:]); err != nil || r[1] != 0 {
				t.Fatalf("reply: %x %v", r, err)
			}
			testkit.EchoCheck(t, c)
			c.Close() // ends the channel: its access line follows
		})
	}
	t.Run("socks4 refused", func(t *testing.T) {
		c := dial(t, f.addr)
		c.Write([]byte{4, 1, byte(port >> 8), byte(port), 127, 0, 0, 1, 0})
		var r [8]byte
		if _, err := io.ReadFull(c, r[:]); err != nil || r[1] != 0x5B {
			t.Fatalf("got %x %v, want 5b", r, err)
		}
	})
	defer func() {
		if t.Failed() {
			t.Log(f.logs.String())
		}
	}()
	waitFor(t, func() bool {
		return strings.Contains(f.logs.String(), `"proto":"socks5","target":"`+echo+`","upstream":"direct","user":"alice"`)
	})
}

func TestDialCheckAndHTTPRequestHooks(t *testing.T) {
	web := httpServer(t)
	_, webPort := splitPort(t, web)
	echo := testkit.EchoServer(t)
	_, echoPort := splitPort(t, echo)
	f := start(t, gateConfig(echoPort))
	cred := "Proxy-Authorization: " + basic("alice", "secret") + "\r\n"

	// The dial check sees the resolved address: "localhost" is refused on
	// the denied port, with 403.
	c := dial(t, f.addr)
	fmt.Fprintf(c, "CONNECT localhost:%d HTTP/1.1\r\n%s\r\n", echoPort, cred)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("denied dial: got %v %v, want 403", resp, err)
	}
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"reason":"rejected"`) })

	// The HTTP request hook adds a header the target sees, and can refuse.
	c = dial(t, f.addr)
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET http://localhost:%d/ok HTTP/1.1\r\nHost: x\r\n%s\r\n", webPort, cred)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", resp, err)
	}
	resp.Body.Close()
	fmt.Fprintf(c, "GET http://localhost:%d/forbidden HTTP/1.1\r\nHost: x\r\n%s\r\n", webPort, cred)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("forbidden path: got %v %v, want 403", resp, err)
	}
}

// onceDial admits the first dial check and refuses every later one.
type onceDial struct {
	name  string
	calls atomic.Int32
}

func (o *onceDial) Name() string { return o.name }
func (o *onceDial) OnDial(*plugins.Session, netip.AddrPort) error {
	if o.calls.Add(1) > 1 {
		return plugins.Reject(plugins.CodeForbidden, "second dial check")
	}
	return nil
}

// TestDialCheckOnReusedConnection: a plain HTTP request that reuses a
// kept-alive upstream connection is still checked against its address.
func TestDialCheckOnReusedConnection(t *testing.T) {
	web := httpServer(t)
	o := &onceDial{name: "once"}
	f := start(t, basicConfig)
	// Swap the listener's chain for one with the checker before any
	// connection: the factory route needs a registered type, which this
	// one-off does not merit.
	f.srv.gen.listeners[0].chain = plugins.NewChain([]plugins.Plugin{o})
	c := dial(t, f.addr)
	br := bufio.NewReader(c)
	for i, want := range []int{200, 403} {
		fmt.Fprintf(c, "GET http://%s/r%d HTTP/1.1\r\nHost: x\r\n\r\n", web, i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("request %d: got %d, want %d", i, resp.StatusCode, want)
		}
	}
}
