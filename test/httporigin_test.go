//go:build linux

package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// Origins and clients of the plain HTTP forwarding tests (httpfwd_test.go):
// nginx from Debian as the ordinary origin, hand-written origins on raw
// TCP that record the bytes they receive or answer with chosen bytes, and
// a raw client that writes a request exactly as the test spells it.

// startNginx runs nginx (Debian nginx-light) with one server block on a
// free loopback port and returns its address. server is the inside of the
// server block (directives and locations) without the listen line.
func startNginx(t *testing.T, server string) string {
	t.Helper()
	addr, _ := runNginx(t, nginxSite{server: server})
	return addr
}

// nginxSite is what a test sets in an nginx it runs.
type nginxSite struct {
	http   string // more directives of the http block (a log_format)
	log    string // the access log's format name; empty for nginx's own
	listen string // options after the listen address (proxy_protocol)
	server string // the inside of the server block, without listen
}

// runNginx runs nginx with site on a free loopback port and returns its
// address and its directory, where access.log is written.
func runNginx(t *testing.T, site nginxSite) (addr, dir string) {
	t.Helper()
	nginx := testkit.NeedBin(t, "nginx")
	dir = t.TempDir()
	addr = freeAddr(t)
	conf := filepath.Join(dir, "nginx.conf")
	writeFile(t, conf, fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
%[4]s
    access_log %[1]s/access.log %[5]s;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s %[6]s;
%[3]s
    }
}
`, dir, addr, site.server, site.http, site.log, site.listen))
	startPeer(t, addr, nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	return addr, dir
}

// maxTestHead bounds the request and response heads the test's own
// readers accept, so a misbehaving peer cannot make the test hold much.
const maxTestHead = 1 << 20

// readHead reads one HTTP message head, start line to the empty line, and
// returns it byte for byte (CRLFs included).
func readHead(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for b.Len() <= maxTestHead {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\r\n" || line == "\n" {
			return b.String(), nil
		}
	}
	return b.String(), fmt.Errorf("head over %d bytes", maxTestHead)
}

// headLines splits a head into its start line and field lines, without
// the line ends and the final empty line.
func headLines(head string) (start string, fields []string) {
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	return lines[0], lines[1:]
}

// fieldName is the name of a field line as written (case kept).
func fieldName(line string) string {
	name, _, _ := strings.Cut(line, ":")
	return name
}

// endToEnd drops the field lines an intermediary must or may remove or
// add on its own account (RFC 9110 section 7.6.1): Connection and the
// fields the given Connection values name, Keep-Alive, Proxy-*, TE,
// Trailer, Upgrade. What remains is what a faithful intermediary passes
// on unchanged.
func endToEnd(fields []string, connection ...string) []string {
	hop := map[string]bool{"connection": true, "keep-alive": true, "te": true, "trailer": true, "upgrade": true}
	for _, v := range connection {
		for name := range strings.SplitSeq(v, ",") {
			hop[strings.ToLower(strings.TrimSpace(name))] = true
		}
	}
	var out []string
	for _, f := range fields {
		name := strings.ToLower(fieldName(f))
		if hop[name] || strings.HasPrefix(name, "proxy-") {
			continue
		}
		out = append(out, f)
	}
	return out
}

// newOrigin starts a hand-written HTTP origin on 127.0.0.1: handle runs
// for each connection with a reader over it; the connection has a 30 s
// deadline, so every handler ends by itself.
func newOrigin(t *testing.T, handle func(c *net.TCPConn, br *bufio.Reader)) *testkit.TCPTarget {
	t.Helper()
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		deadlineAfter(c, 30*time.Second)
		handle(c, bufio.NewReader(c))
	})
}

// recordingOrigin answers every request with answer (a whole response,
// head and body) after sending the request head it read, byte for byte,
// to heads. Requests must have no body. It serves requests on a
// connection until the client closes it.
func recordingOrigin(t *testing.T, answer string) (*testkit.TCPTarget, <-chan string) {
	t.Helper()
	heads := make(chan string, 16)
	o := newOrigin(t, func(c *net.TCPConn, br *bufio.Reader) {
		for range 16 {
			head, err := readHead(br)
			if err != nil {
				return
			}
			select {
			case heads <- head:
			default:
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})
	return o, heads
}

// nextHead waits for the next head an origin recorded.
func nextHead(t *testing.T, heads <-chan string) string {
	t.Helper()
	select {
	case h := <-heads:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("the origin received no request within 10s")
		return ""
	}
}

// rawClient is a client connection to ferry on which the test writes
// requests byte for byte and reads the answers.
type rawClient struct {
	c  *net.TCPConn
	br *bufio.Reader
}

// dialRaw connects to ferry at addr; the connection has a 30 s deadline
// and closes at the end of the test.
func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.DialTimeout)
	defer cancel()
	c, err := testkit.DialTCP(ctx, addr)
	if err != nil {
		t.Fatalf("dial ferry: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	deadlineAfter(c, 30*time.Second)
	return &rawClient{c: c, br: bufio.NewReader(c)}
}

// send writes raw to ferry.
func (rc *rawClient) send(t *testing.T, raw string) {
	t.Helper()
	if _, err := io.WriteString(rc.c, raw); err != nil {
		t.Fatalf("write request: %v", err)
	}
}

// response reads one response to a request with method and its whole
// body.
func (rc *rawClient) response(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	resp, body, err := rc.tryResponse(method)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp, body
}

func (rc *rawClient) tryResponse(method string) (*http.Response, string, error) {
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTestHead))
	return resp, string(b), err
}

// closedByPeer reports whether the client connection ends (EOF or a reset)
// within 10 s with no more bytes: ferry closed it.
func (rc *rawClient) closedByPeer() (bool, string) {
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer deadlineAfter(rc.c, 30*time.Second)
	b := make([]byte, 512)
	n, err := rc.br.Read(b)
	switch {
	case n > 0:
		return false, fmt.Sprintf("got %d more bytes: %q", n, b[:n])
	case isConnEnd(err):
		return true, err.Error()
	}
	return false, fmt.Sprintf("still open after 10s (%v)", err)
}

// bytesOf returns n bytes b.
func bytesOf(b byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = b
	}
	return p
}

// runPython runs a Python 3 script with args and returns its stdout; it
// fails the test if python3 is missing (scripts/test.sh installs it with
// python3-requests), the script fails or takes over a minute.
func runPython(t *testing.T, script string, args ...string) string {
	t.Helper()
	py := testkit.NeedBin(t, "python3")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"-c", script}, args...)...)
	// No proxy variables: the script sets its proxy itself.
	for _, kv := range cmd.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(strings.ToLower(name), "_proxy") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("python script %v: %v\nstdout: %s\nstderr: %s", args, err, out, ee.Stderr)
		}
		t.Fatalf("python script %v: %v", args, err)
	}
	return string(out)
}
