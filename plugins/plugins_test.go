package plugins

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// recorder notes every hook call in a shared log.
type recorder struct {
	name string
	log  *[]string
	fail string // hook name that panics
}

func (r *recorder) Name() string { return r.name }
func (r *recorder) note(hook string) {
	*r.log = append(*r.log, r.name+"."+hook)
	if r.fail == hook {
		panic("boom")
	}
}
func (r *recorder) OnConnect(context.Context, *Session) error { r.note("connect"); return nil }
func (r *recorder) OnRead(_ *Session, p []byte) ([]byte, error) {
	r.note("read")
	return append(p, r.name...), nil
}
func (r *recorder) OnWrite(_ *Session, p []byte) ([]byte, error) {
	r.note("write")
	return append(p, r.name...), nil
}
func (r *recorder) OnClose(*Session, Stats) { r.note("close") }

type connectOnly struct{ name string }

func (c connectOnly) Name() string { return c.name }
func (c connectOnly) OnConnect(context.Context, *Session) error {
	return Reject(CodeForbidden, "nope")
}

func TestChainOrder(t *testing.T) {
	var log []string
	a, b := &recorder{name: "a", log: &log}, &recorder{name: "b", log: &log}
	c := NewChain([]Plugin{a, b})
	s := &Session{}
	if err := c.Connect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	up, _ := c.Read(s, []byte(">"))
	down, _ := c.Write(s, []byte("<"))
	c.Close(s, Stats{}, nil)
	want := []string{"a.connect", "b.connect", "a.read", "b.read", "b.write", "a.write", "b.close", "a.close"}
	if !slices.Equal(log, want) {
		t.Fatalf("calls: got %v, want %v", log, want)
	}
	if string(up) != ">ab" || string(down) != "<ba" {
		t.Fatalf("data: got %q and %q, want >ab and <ba", up, down)
	}
}

func TestChainHookKinds(t *testing.T) {
	tests := []struct {
		name                 string
		ps                   []Plugin
		wantReads, wantWrite bool
	}{
		{"none", nil, false, false},
		{"connect only", []Plugin{connectOnly{"c"}}, false, false},
		{"data", []Plugin{&recorder{name: "r", log: new([]string)}}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChain(tt.ps)
			if c.HasReaders() != tt.wantReads || c.HasWriters() != tt.wantWrite {
				t.Fatalf("got readers=%v writers=%v", c.HasReaders(), c.HasWriters())
			}
		})
	}
	var nilChain *Chain
	if out, err := nilChain.Read(nil, []byte("x")); err != nil || string(out) != "x" {
		t.Fatalf("nil chain Read: %q %v", out, err)
	}
}

func TestChainRejectAndPanic(t *testing.T) {
	var log []string
	c := NewChain([]Plugin{connectOnly{"gate"}, &recorder{name: "after", log: &log}})
	err := c.Connect(context.Background(), &Session{})
	var he *HookError
	if !errors.As(err, &he) || he.Plugin != "gate" || CodeOf(err) != CodeForbidden {
		t.Fatalf("got %v, want a forbidden HookError from gate", err)
	}
	if len(log) != 0 {
		t.Fatalf("hooks after a rejection ran: %v", log)
	}

	for _, hook := range []string{"connect", "read", "write", "close"} {
		t.Run("panic in "+hook, func(t *testing.T) {
			p := &recorder{name: "p", log: new([]string), fail: hook}
			c := NewChain([]Plugin{p})
			s := &Session{}
			var err error
			switch hook {
			case "connect":
				err = c.Connect(context.Background(), s)
			case "read":
				_, err = c.Read(s, []byte("x"))
			case "write":
				_, err = c.Write(s, []byte("x"))
			case "close":
				c.Close(s, Stats{}, func(e error) { err = e })
			}
			if !errors.As(err, &he) || he.Plugin != "p" || he.Stack == nil || !strings.Contains(err.Error(), "panic") {
				t.Fatalf("got %v, want a HookError with stack naming p", err)
			}
		})
	}
}

func TestCodeMappings(t *testing.T) {
	tests := []struct {
		code   Code
		status int
		socks5 byte
	}{
		{CodeGeneral, 502, 0x01},
		{CodeForbidden, 403, 0x02},
		{CodeAuthRequired, 407, 0x02},
		{CodeNetUnreachable, 502, 0x03},
		{CodeHostUnreachable, 502, 0x04},
		{CodeConnRefused, 502, 0x05},
		{CodeTimeout, 504, 0x06},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			if got := tt.code.HTTPStatus(); got != tt.status {
				t.Errorf("HTTP: got %d, want %d", got, tt.status)
			}
			if got := tt.code.SOCKS5Reply(); got != tt.socks5 {
				t.Errorf("SOCKS5: got %#x, want %#x", got, tt.socks5)
			}
		})
	}
}

type svc struct {
	name     string
	log      *[]string
	startErr error
}

func (s *svc) Start(context.Context) error {
	*s.log = append(*s.log, "start "+s.name)
	return s.startErr
}
func (s *svc) Stop(context.Context) error { *s.log = append(*s.log, "stop "+s.name); return nil }

func TestServices(t *testing.T) {
	var log []string
	ss := NewServices()
	created := 0
	for _, name := range []string{"a", "b", "a"} {
		_, err := ss.Provide(name, func() (Service, error) { created++; return &svc{name: name, log: &log}, nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	if created != 2 {
		t.Fatalf("created %d services, want 2 (a is shared)", created)
	}
	if _, ok := ss.Lookup("b"); !ok {
		t.Fatal("Lookup(b) failed")
	}
	if err := ss.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ss.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"start a", "start b", "stop b", "stop a"}
	if !slices.Equal(log, want) {
		t.Fatalf("got %v, want %v", log, want)
	}

	log = nil
	ss = NewServices()
	ss.Provide("ok", func() (Service, error) { return &svc{name: "ok", log: &log}, nil })
	ss.Provide("bad", func() (Service, error) { return &svc{name: "bad", log: &log, startErr: errors.New("no")}, nil })
	if err := ss.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "start service bad") {
		t.Fatalf("got %v, want start error naming bad", err)
	}
	want = []string{"start ok", "start bad", "stop ok"}
	if !slices.Equal(log, want) {
		t.Fatalf("after failed start: got %v, want %v", log, want)
	}
}

func TestClientIP(t *testing.T) {
	var nilTCP *net.TCPAddr
	tests := []struct {
		name   string
		addr   net.Addr
		want   string
		wantOK bool
	}{
		{"ipv4", &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}, "192.0.2.1", true},
		{"mapped", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[::ffff:192.0.2.1]:1")), "192.0.2.1", true},
		{"ipv6 zone", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 1}, "fe80::1", true},
		{"udp", &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, "2001:db8::1", true},
		{"unix", &net.UnixAddr{Name: "/run/x", Net: "unix"}, "", false},
		{"nil", nil, "", false},
		{"typed nil", nilTCP, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := (&Session{Client: tt.addr}).ClientIP()
			ok := got.IsValid()
			if ok != tt.wantOK || (ok && got.String() != tt.want) {
				t.Errorf("got %v, %v, want %s, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestEnvPath(t *testing.T) {
	tests := []struct{ dir, in, want string }{
		{"/etc/ferry", "users", "/etc/ferry/users"},
		{"/etc/ferry", "lists/ads.txt", "/etc/ferry/lists/ads.txt"},
		{"/etc/ferry", "/var/lib/users", "/var/lib/users"},
		{"/etc/ferry", "", ""},
		{"", "users", "users"},
	}
	for _, tt := range tests {
		env := Env{ConfigDir: tt.dir}
		if got := env.Path(tt.in); got != tt.want {
			t.Errorf("Path(%q) in %q: got %q, want %q", tt.in, tt.dir, got, tt.want)
		}
	}
}
