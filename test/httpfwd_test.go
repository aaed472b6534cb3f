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
	"net/http/httputil"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/test/testkit"
)

// Plain HTTP forwarding as a faithful intermediary (issue 14): each test
// is one numbered point of the issue, run against real origins (nginx,
// hand-written origins on raw TCP) and real clients (Python requests,
// curl, a raw client that writes the bytes the test chose).

// TestHTTPFwdStaleKeepAlive (issue 14, point 1): a Python requests
// session GETs through ferry, waits past nginx's keepalive_timeout (1s),
// then POSTs with a body on the same connection; curl does the same.
// ferry's kept-alive upstream connection is dead by then; it must not
// turn into a 502. The same clients direct to nginx are the control.
func TestHTTPFwdStaleKeepAlive(t *testing.T) {
	t.Parallel()
	origin := startNginx(t, `        keepalive_timeout 1s;
        location / { return 200 "nginx ok\n"; }`)
	f := startFerry(t, withJSON(""), nil)
	// The session keeps one connection to ferry (or to nginx, direct);
	// the pause is past nginx's keep-alive timeout with some margin.
	const script = `
import sys, time, requests
proxy, url = sys.argv[1], sys.argv[2]
s = requests.Session()
s.trust_env = False
if proxy:
    s.proxies = {"http": proxy}
r = s.get(url, timeout=20)
print(r.status_code)
time.sleep(2)
r = s.post(url, data=b"x" * 4096, timeout=20)
print(r.status_code, r.text.strip()[:200].replace("\n", " "))
`
	url := "http://" + origin + "/form"
	t.Run("python requests", func(t *testing.T) {
		t.Parallel()
		if got, want := runPython(t, script, "", url), "200\n200 nginx ok\n"; got != want {
			t.Fatalf("control, direct to nginx: got %q, want %q", got, want)
		}
		if got, want := runPython(t, script, "http://"+f.addr, url), "200\n200 nginx ok\n"; got != want {
			t.Errorf("through ferry: got %q, want %q (the POST after nginx's keep-alive timeout must reach nginx)", got, want)
		}
	})
	// curl does the same with two transfers 2 s apart (--rate 30/m) on
	// one connection; it prints the status and its new connections.
	t.Run("curl", func(t *testing.T) {
		t.Parallel()
		needCurl(t)
		args := func(proxy ...string) []string {
			w := []string{"-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n"}
			return slices.Concat([]string{"--rate", "30/m"}, proxy, w, []string{url, "--next"}, proxy, w, []string{"--data-binary", "hello", url})
		}
		if got := curl(t, args()...); !strings.HasPrefix(got, "200 1\n200 ") {
			t.Fatalf("control, direct to nginx: got %q, want 200 twice", got)
		}
		got := curl(t, args("-x", "http://"+f.addr)...)
		t.Logf("curl through ferry: %q (status, new connections)", got)
		if !strings.HasPrefix(got, "200 1\n200 ") {
			t.Errorf("through ferry: got %q, want 200 twice (the POST after nginx's keep-alive timeout must reach nginx)", got)
		}
	})
}

// earlyAnswerOrigin answers as soon as it has read the request head, with
// status, Connection: close and a short body, while the client is still
// uploading; then it does what Go's net/http server does after such an
// answer: half-closes, waits half a second without reading, and closes,
// which resets the connection since the body was not read.
func earlyAnswerOrigin(t *testing.T, status int, body string) *testkit.TCPTarget {
	t.Helper()
	return newOrigin(t, func(c *net.TCPConn, br *bufio.Reader) {
		if _, err := readHead(br); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			status, http.StatusText(status), len(body), body)
		c.CloseWrite()
		time.Sleep(500 * time.Millisecond)
	})
}

// TestHTTPFwdEarlyAnswer (issue 14, point 2): the origin answers 413 or
// 401 and closes while the client is still uploading a 32 MiB body,
// slowly enough that most of it is still to come. The client must get
// the origin's answer, not ferry's 502.
func TestHTTPFwdEarlyAnswer(t *testing.T) {
	t.Parallel()
	f := startFerry(t, withJSON(""), nil)
	for _, tt := range []struct {
		name   string
		status int
		body   string
	}{
		{"413", http.StatusRequestEntityTooLarge, "origin says: too large\n"},
		{"401", http.StatusUnauthorized, "origin says: who are you\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := earlyAnswerOrigin(t, tt.status, tt.body)
			const size = 32 << 20
			rc := dialRaw(t, f.addr)
			rc.send(t, fmt.Sprintf("POST http://%s/upload HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", o.Addr, o.Addr, size))

			// The body goes in 64 KiB pieces 10 ms apart (at least 5 s
			// in all) until the client has its answer or the write fails.
			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				piece := make([]byte, 64<<10)
				for sent := 0; sent < size; sent += len(piece) {
					select {
					case <-done:
						return
					case <-time.After(10 * time.Millisecond):
					}
					if _, err := rc.c.Write(piece); err != nil {
						return
					}
				}
			}()
			resp, body, err := rc.tryResponse(http.MethodPost)
			// Stop the upload, also a write blocked on a full socket.
			close(done)
			rc.c.SetWriteDeadline(time.Now())
			wg.Wait()
			if err != nil {
				t.Fatalf("read the answer: %v", err)
			}
			if resp.StatusCode != tt.status || body != tt.body {
				t.Errorf("client got %q with body %q, want the origin's %d with body %q", resp.Status, body, tt.status, tt.body)
			}
		})
	}
}

// curlUpload is what curl reported for an upload: the status and the
// bytes it sent.
type curlUpload struct {
	status string
	sent   int64
}

// uploadWithExpect uploads file with curl and Expect: 100-continue to url,
// through proxy unless it is empty. curl waits up to 10 s for the 100 (its
// default is 1 s), so that only the origin's answer decides whether the
// body goes.
func uploadWithExpect(t *testing.T, proxy, file, url string) curlUpload {
	t.Helper()
	args := []string{"-o", "/dev/null", "-w", "%{http_code} %{size_upload}",
		"-H", "Expect: 100-continue", "--expect100-timeout", "10", "--data-binary", "@" + file, url}
	if proxy != "" {
		args = append([]string{"-x", "http://" + proxy}, args...)
	}
	res := curlMayFail(t, args...)
	var u curlUpload
	var sent float64
	if _, err := fmt.Sscanf(res.stdout, "%s %g", &u.status, &sent); err != nil {
		t.Fatalf("curl %q: output %q (exit %d, stderr %q): %v", args, res.stdout, res.code, res.stderr, err)
	}
	u.sent = int64(sent)
	return u
}

// TestHTTPFwdExpectContinue (issue 14, point 3): Expect: 100-continue
// goes to the origin, and the origin's answer to it comes back.
func TestHTTPFwdExpectContinue(t *testing.T) {
	t.Parallel()
	f := startFerry(t, withJSON(""), nil)

	// nginx with client_max_body_size 1k answers 413 at once to a 10 MiB
	// upload announced with Expect: 100-continue; curl then sends none of
	// it. Through ferry it must not send (nearly) all of it either.
	t.Run("nginx refuses at once", func(t *testing.T) {
		t.Parallel()
		needCurl(t)
		origin := startNginx(t, `        client_max_body_size 1k;
        location / { return 200 "nginx ok\n"; }`)
		file := filepath.Join(t.TempDir(), "upload")
		const size = 10 << 20
		if err := os.WriteFile(file, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		url := "http://" + origin + "/upload"
		direct := uploadWithExpect(t, "", file, url)
		if direct.status != "413" || direct.sent >= 1<<20 {
			t.Fatalf("control, direct to nginx: got %s after %d bytes sent, want 413 after (almost) none", direct.status, direct.sent)
		}
		via := uploadWithExpect(t, f.addr, file, url)
		t.Logf("direct: %s after %d bytes; through ferry: %s after %d bytes", direct.status, direct.sent, via.status, via.sent)
		if via.status != "413" || via.sent >= 1<<20 {
			t.Errorf("through ferry: got %s after %d of %d bytes sent, want 413 after less than 1 MiB (direct: %d)", via.status, via.sent, size, direct.sent)
		}
	})

	// expectOrigin checks that the request carries Expect: 100-continue,
	// sends 100 Continue first if continue100, reads the body and answers
	// 200 with what it got.
	expectOrigin := func(t *testing.T, continue100 bool) (*testkit.TCPTarget, <-chan string) {
		heads := make(chan string, 1)
		return newOrigin(t, func(c *net.TCPConn, br *bufio.Reader) {
			head, err := readHead(br)
			if err != nil {
				return
			}
			heads <- head
			if continue100 {
				io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
			}
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
			if err != nil {
				return
			}
			body, err := io.ReadAll(io.LimitReader(br, req.ContentLength))
			if err != nil {
				return
			}
			answer := "got " + string(body) + "\n"
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(answer), answer)
		}), heads
	}
	for _, tt := range []struct {
		name        string
		continue100 bool
	}{
		// The origin's 100 reaches the client, then its final answer.
		{"origin sends 100", true},
		// The origin says nothing: after a short wait (1 s, as curl
		// does) ferry lets the body come anyway.
		{"origin silent", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, heads := expectOrigin(t, tt.continue100)
			rc := dialRaw(t, f.addr)
			const body = "hello expect"
			rc.send(t, fmt.Sprintf("POST http://%s/x HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", o.Addr, o.Addr, len(body)))
			// The client holds its body until it hears 100. When the
			// origin sends one, the client waits for it as long as the
			// test's deadline allows; when it does not, the client
			// waits 3 s, then sends anyway, as curl does after 1 s:
			// ferry may send its own 100 after a wait or let the body
			// come when the client sends it.
			if !tt.continue100 {
				rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
			}
			interim, err := readHead(rc.br)
			deadlineAfter(rc.c, 30*time.Second)
			switch {
			case err != nil && !tt.continue100 && errors.Is(err, os.ErrDeadlineExceeded) && interim == "":
				t.Log("no 100 Continue within 3s: the client sends its body anyway")
			case err != nil:
				t.Fatalf("wait for 100 Continue: %v (got %q)", err, interim)
			default:
				if start, _ := headLines(interim); !strings.HasPrefix(start, "HTTP/1.1 100 ") {
					t.Fatalf("first answer: got %q, want HTTP/1.1 100 Continue", start)
				}
			}
			rc.send(t, body)
			resp, got := rc.response(t, http.MethodPost)
			if resp.StatusCode != http.StatusOK || got != "got "+body+"\n" {
				t.Errorf("final answer: got %q %q, want 200 %q", resp.Status, got, "got "+body+"\n")
			}
			head := nextHead(t, heads)
			if _, fields := headLines(head); !slices.ContainsFunc(fields, func(f string) bool {
				return strings.EqualFold(strings.TrimSpace(f), "Expect: 100-continue")
			}) {
				t.Errorf("the origin got no Expect: 100-continue; its request head:\n%s", head)
			}
		})
	}
}

// unusualTarget is a request-target with bytes that are valid on the wire
// but that a URL re-encoder changes: '|', '{', '}' and raw UTF-8.
const unusualTarget = "/a|b/{x}/é?q=1|2&sig=AbC%2Fd=="

// TestHTTPFwdClientBytes (issue 14, point 4, and the issue's "must
// show"): the origin receives the client's request-target and header
// lines byte for byte: order, case and repeated names kept. ferry may
// drop the hop-by-hop fields (Connection and what it names, Keep-Alive,
// Proxy-*) and may add its own Connection, nothing else.
func TestHTTPFwdClientBytes(t *testing.T) {
	t.Parallel()
	o, heads := recordingOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
	f := startFerry(t, withJSON(""), nil)
	fields := []string{
		"Host: " + o.Addr,
		"x-lower: 1",
		"X-UPPER: 2",
		"X-Dup: a",
		"User-Agent: e2e/1.0",
		"x-dup: b",
		"Cookie: b=2; a=1",
		"accept: */*",
		"X-Dup: c",
	}
	hop := []string{
		"Connection: keep-alive, X-Hop",
		"X-Hop: only for ferry",
		"Proxy-Connection: keep-alive",
		"Keep-Alive: timeout=5",
	}
	// The hop-by-hop fields sit between the others, so that removing
	// them must not reorder what stays.
	all := slices.Concat(fields[:3], hop[:2], fields[3:6], hop[2:], fields[6:])
	rc := dialRaw(t, f.addr)
	rc.send(t, "GET http://"+o.Addr+unusualTarget+" HTTP/1.1\r\n"+strings.Join(all, "\r\n")+"\r\n\r\n")
	if resp, body := rc.response(t, http.MethodGet); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Fatalf("client got %q %q, want the origin's 200 ok", resp.Status, body)
	}

	head := nextHead(t, heads)
	start, got := headLines(head)
	// Origin-form is what a proxy sends an origin (RFC 9112 section
	// 3.2.1); absolute-form the origin must accept as well.
	if want := "GET " + unusualTarget + " HTTP/1.1"; start != want && start != "GET http://"+o.Addr+unusualTarget+" HTTP/1.1" {
		t.Errorf("origin's request line: got %q, want %q", start, want)
	}
	var named []string
	for _, f := range got {
		if strings.EqualFold(fieldName(f), "Connection") {
			_, v, _ := strings.Cut(f, ":")
			named = append(named, v)
		}
	}
	if kept := endToEnd(got, named...); !slices.Equal(kept, fields) {
		t.Errorf("origin's header lines (hop-by-hop ones aside):\n got %q\nwant %q\nwhole head:\n%s", kept, fields, head)
	}
	for _, f := range got {
		if n := strings.ToLower(fieldName(f)); n == "x-hop" || n == "keep-alive" || strings.HasPrefix(n, "proxy-") {
			t.Errorf("origin got the hop-by-hop field %q", f)
		}
	}
}

// TestHTTPFwdResponses (issue 14, point 5): what the origin answers
// reaches the client unchanged except for the status line's version,
// which is ferry's own HTTP/1.1.
func TestHTTPFwdResponses(t *testing.T) {
	t.Parallel()
	f := startFerry(t, withJSON(""), nil)

	// The response's field lines in the origin's order and case, repeated
	// names kept, and nothing added (no User-Agent).
	t.Run("header lines byte for byte", func(t *testing.T) {
		t.Parallel()
		fields := []string{
			"x-lower: 1",
			"X-UPPER: 2",
			"Set-Cookie: a=1; Path=/",
			"set-cookie: b=2",
			"X-Dup: a",
			"Content-Length: 3",
			"x-dup: b",
			"ETag: \"v1\"",
		}
		o, _ := recordingOrigin(t, "HTTP/1.1 200 OK\r\n"+strings.Join(fields, "\r\n")+"\r\n\r\nok\n")
		rc := dialRaw(t, f.addr)
		rc.send(t, fmt.Sprintf("GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", o.Addr, o.Addr))
		head, err := readHead(rc.br)
		if err != nil {
			t.Fatalf("read response head: %v (got %q)", err, head)
		}
		start, got := headLines(head)
		if start != "HTTP/1.1 200 OK" {
			t.Errorf("status line: got %q, want %q", start, "HTTP/1.1 200 OK")
		}
		if kept := endToEnd(got); !slices.Equal(kept, fields) {
			t.Errorf("client's header lines (hop-by-hop ones aside):\n got %q\nwant %q", kept, fields)
		}
		for _, l := range got {
			if strings.EqualFold(fieldName(l), "User-Agent") {
				t.Errorf("response gained %q", l)
			}
		}
	})

	// An HTTP/1.0 origin: the HTTP/1.1 client sees HTTP/1.1 from ferry
	// and its connection stays usable for the next request.
	t.Run("HTTP/1.0 origin", func(t *testing.T) {
		t.Parallel()
		o := newOrigin(t, func(c *net.TCPConn, br *bufio.Reader) {
			if _, err := readHead(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nold ok")
		})
		rc := dialRaw(t, f.addr)
		for i := range 2 {
			rc.send(t, fmt.Sprintf("GET http://%s/%d HTTP/1.1\r\nHost: %s\r\n\r\n", o.Addr, i, o.Addr))
			head, err := readHead(rc.br)
			if err != nil {
				t.Fatalf("request %d on the same connection: %v (got %q)", i+1, err, head)
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head+"old ok")), &http.Request{Method: http.MethodGet})
			if err != nil {
				t.Fatalf("request %d: parse %q: %v", i+1, head, err)
			}
			if start, _ := headLines(head); start != "HTTP/1.1 200 OK" {
				t.Errorf("request %d: status line %q, want %q", i+1, start, "HTTP/1.1 200 OK")
			}
			if resp.Close {
				t.Errorf("request %d: ferry closes the client connection after the HTTP/1.0 origin's answer:\n%s", i+1, head)
			}
			if _, err := io.ReadFull(rc.br, make([]byte, 6)); err != nil {
				t.Fatalf("request %d: body: %v", i+1, err)
			}
		}
	})
}

// hostileOrigin answers every request with a response head of
// headBytes: either one huge header line or many small ones. It writes
// until done or until ferry stops reading (the write fails or its
// deadline passes).
func hostileOrigin(t *testing.T, oneLine bool, headBytes int) *testkit.TCPTarget {
	t.Helper()
	return newOrigin(t, func(c *net.TCPConn, br *bufio.Reader) {
		if _, err := readHead(br); err != nil {
			return
		}
		bw := bufio.NewWriterSize(c, 256<<10)
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
		if oneLine {
			bw.WriteString("X-Big: ")
			bw.Write(bytesOf('a', headBytes))
			bw.WriteString("\r\n")
		} else {
			for i := 0; i < headBytes/8; i++ {
				bw.WriteString("X-N: 1\r\n") // 8 bytes
			}
		}
		bw.WriteString("\r\nok")
		bw.Flush()
		c.CloseWrite()
		io.Copy(io.Discard, br)
	})
}

// TestHTTPFwdHostileOrigin (issue 14, point 6): an origin whose response
// head is 64 MiB (one line) or a million lines cannot make ferry hold it:
// the client gets a 502 with the access line's error naming the response
// head, and ferry's peak RSS grows by far less than the head.
func TestHTTPFwdHostileOrigin(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		oneLine   bool
		headBytes int
	}{
		{"64 MiB header line", true, 64 << 20},
		{"a million header lines", false, 8 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := hostileOrigin(t, tt.oneLine, tt.headBytes)
			f := startFerry(t, withJSON(""), nil)
			pid := f.cmd.Process.Pid
			before, err := testkit.ProcStatusKiB(pid, "VmHWM")
			if err != nil {
				t.Fatal(err)
			}
			rc := dialRaw(t, f.addr)
			rc.c.SetDeadline(time.Now().Add(20 * time.Second))
			rc.send(t, fmt.Sprintf("GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", o.Addr, o.Addr))
			// Only the status line: today's ferry passes the whole head on.
			status, err := rc.br.ReadString('\n')
			if err != nil {
				t.Errorf("read status line: %v (got %q), want a 502 within 20s", err, status)
			} else if !strings.HasPrefix(status, "HTTP/1.1 502 ") {
				t.Errorf("status line: got %q, want HTTP/1.1 502", status)
			}
			rc.c.Close()
			// The access line marks the end of the exchange, so the peak
			// RSS read after it covers all of it. The wait is long (a
			// ferry that reads the whole head under the race detector
			// takes a while) and bounded.
			var access logLine
			for deadline := time.Now().Add(time.Minute); access == nil && time.Now().Before(deadline); {
				if ls := f.lines("access", byTarget(o.Addr)); len(ls) > 0 {
					access = ls[0]
				} else {
					time.Sleep(50 * time.Millisecond)
				}
			}
			after, err := testkit.ProcStatusKiB(pid, "VmHWM")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("ferry's peak RSS: %d KiB before, %d KiB after a %d MiB response head", before, after, tt.headBytes>>20)
			if grew := after - before; grew >= 16<<10 {
				t.Errorf("ferry's peak RSS grew by %d KiB, want less than 16 MiB for a %d MiB response head", grew, tt.headBytes>>20)
			}
			if access == nil {
				t.Fatal("no access line for the request within a minute")
			}
			// Loosely: the head's size or its field count, whichever
			// limit ferry hit first, in words of its choosing.
			if e := access.str("error"); !strings.Contains(e, "response") || !strings.Contains(e, "head") {
				t.Errorf("access line error: got %q, want it to name the response head (size or header fields)", e)
			}
		})
	}

	// [limits] max_response_header_bytes raises the limit: a 200 KiB
	// header line is refused by default and passed with 1MiB.
	t.Run("max_response_header_bytes", func(t *testing.T) {
		t.Parallel()
		const n = 200 << 10
		o := hostileOrigin(t, true, n)
		for _, tt := range []struct {
			name   string
			limits string
			want   int
		}{
			{"default 64KiB", "", http.StatusBadGateway},
			{"raised to 1MiB", "max_response_header_bytes = \"1MiB\"", http.StatusOK},
		} {
			t.Run(tt.name, func(t *testing.T) {
				f := startFerry(t, limitsConfig("", tt.limits), nil)
				rc := dialRaw(t, f.addr)
				rc.send(t, fmt.Sprintf("GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", o.Addr, o.Addr))
				resp, _ := rc.response(t, http.MethodGet)
				if resp.StatusCode != tt.want {
					t.Errorf("got %q, want %d", resp.Status, tt.want)
				}
				if tt.want == http.StatusOK && len(resp.Header.Get("X-Big")) != n {
					t.Errorf("X-Big: got %d bytes, want %d", len(resp.Header.Get("X-Big")), n)
				}
			})
		}
	})
}

// TestHTTPFwdFraming (issue 14, point 7): message framing per RFC 9112
// section 6.
func TestHTTPFwdFraming(t *testing.T) {
	t.Parallel()
	f := startFerry(t, withJSON(""), nil)

	// Content-Length and Transfer-Encoding together: served with the
	// chunked framing (the origin gets Transfer-Encoding and no
	// Content-Length), then the client connection is closed (section
	// 6.1: it MUST be).
	t.Run("CL and TE request", func(t *testing.T) {
		t.Parallel()
		heads := make(chan string, 1)
		bodies := make(chan string, 1)
		o := newOrigin(t, func(c *net.TCPConn, br *bufio.Reader) {
			head, err := readHead(br)
			if err != nil {
				return
			}
			heads <- head
			body, err := io.ReadAll(io.LimitReader(httputil.NewChunkedReader(br), 1<<20))
			if err != nil {
				return
			}
			bodies <- string(body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
			io.Copy(io.Discard, br)
		})
		rc := dialRaw(t, f.addr)
		rc.send(t, fmt.Sprintf("POST http://%s/ HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", o.Addr, o.Addr))
		resp, body := rc.response(t, http.MethodPost)
		if resp.StatusCode != http.StatusOK || body != "ok\n" {
			t.Fatalf("got %q %q, want 200 ok", resp.Status, body)
		}
		head := nextHead(t, heads)
		_, fields := headLines(head)
		var te, cl []string
		for _, l := range fields {
			switch strings.ToLower(fieldName(l)) {
			case "transfer-encoding":
				te = append(te, l)
			case "content-length":
				cl = append(cl, l)
			}
		}
		if len(te) != 1 || len(cl) != 0 {
			t.Errorf("origin got Transfer-Encoding %q and Content-Length %q, want chunked alone; head:\n%s", te, cl, head)
		}
		select {
		case b := <-bodies:
			if b != "hello" {
				t.Errorf("origin got body %q, want %q", b, "hello")
			}
		case <-time.After(10 * time.Second):
			t.Error("origin got no body within 10s")
		}
		if closed, what := rc.closedByPeer(); !closed {
			t.Errorf("client connection after a CL+TE request's response: %s, want it closed", what)
		}
	})

	// Requests ferry must refuse with 400: Transfer-Encoding in HTTP/1.0
	// (section 6.1), whitespace between a field name and the colon
	// (section 5.1), a space inside a field name (not a token).
	for _, tt := range []struct{ name, request string }{
		{"HTTP/1.0 with TE", "POST http://%[1]s/ HTTP/1.0\r\nHost: %[1]s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"space before colon", "POST http://%[1]s/ HTTP/1.1\r\nHost: %[1]s\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello"},
		{"space in field name", "GET http://%[1]s/ HTTP/1.1\r\nHost: %[1]s\r\nX Foo: 1\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, _ := recordingOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
			rc := dialRaw(t, f.addr)
			rc.send(t, fmt.Sprintf(tt.request, o.Addr))
			resp, body := rc.response(t, http.MethodPost)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("got %q %q, want 400", resp.Status, body)
			}
		})
	}

	// An origin's response with ambiguous framing, followed by bytes that
	// look like a second response: they are never served as the answer
	// to the client's next request.
	for _, tt := range []struct{ name, first string }{
		{"CL and TE response", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"two Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
			o := newOrigin(t, func(c *net.TCPConn, br *bufio.Reader) {
				for range 4 {
					head, err := readHead(br)
					if err != nil {
						return
					}
					if strings.HasPrefix(head, "GET /first ") {
						io.WriteString(c, tt.first+smuggled)
						continue
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
				}
			})
			rc := dialRaw(t, f.addr)
			rc.send(t, fmt.Sprintf("GET http://%s/first HTTP/1.1\r\nHost: %s\r\n\r\n", o.Addr, o.Addr))
			resp, body, err := rc.tryResponse(http.MethodGet)
			t.Logf("first answer: %v %q %v", statusOf(resp), body, err)
			// The second request goes on the same client connection if
			// ferry kept it, else on a new one.
			second := fmt.Sprintf("GET http://%s/second HTTP/1.1\r\nHost: %s\r\n\r\n", o.Addr, o.Addr)
			if err != nil || resp.Close {
				rc = dialRaw(t, f.addr)
			}
			if _, err := io.WriteString(rc.c, second); err != nil {
				rc = dialRaw(t, f.addr)
				rc.send(t, second)
			}
			resp, body, err = rc.tryResponse(http.MethodGet)
			if err != nil {
				t.Logf("second request: %v", err)
				return
			}
			if body == "smuggled" || (resp.StatusCode == http.StatusOK && body != "fresh") {
				t.Errorf("second request: got %q %q, want the origin's fresh answer or an error, never the bytes after the ambiguous response", resp.Status, body)
			}
		})
	}
}

// statusOf is resp's status, or "no response".
func statusOf(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	return resp.Status
}

// TestHTTPFwdSmaller (issue 14, point 9).
func TestHTTPFwdSmaller(t *testing.T) {
	t.Parallel()

	// A failed SOCKS5 login writes an access line, as a failed HTTP login
	// does, and the auth plugin's warning carries no empty id.
	t.Run("socks5 failed login", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "users")
		writeFile(t, path, htpasswdLine(t, "alice", "secret"))
		f := startFerry(t, authConfig(path), nil)
		target := newEchoTarget(t)
		ctx, cancel := context.WithTimeout(context.Background(), testkit.DialTimeout)
		defer cancel()
		if c, err := testkit.DialSOCKS5Auth(ctx, f.addr, target.Addr, "alice", "wrong"); err == nil {
			c.Close()
			t.Fatal("SOCKS5 login with a wrong password succeeded")
		}
		warn := f.waitLine(t, "authentication failed", func(l logLine) bool { return l.str("proto") == "socks5" })
		if id, ok := warn["id"]; ok && id == "" {
			t.Errorf("auth warning carries an empty id: %v", warn)
		}
		deadline := time.Now().Add(logTimeout)
		for {
			if ls := f.lines("access", func(l logLine) bool { return l.str("proto") == "socks5" }); len(ls) > 0 {
				if got := ls[0].str("reason"); got != "rejected" {
					t.Errorf("access line of the failed SOCKS5 login: reason %q, want rejected: %v", got, ls[0])
				}
				if ls[0].str("id") == "" {
					t.Errorf("access line of the failed SOCKS5 login has no id: %v", ls[0])
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no access line for the failed SOCKS5 login within %v; stderr:\n%s", logTimeout, f.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	// 502 bodies name the cause rather than "general failure".
	t.Run("502 bodies", func(t *testing.T) {
		t.Parallel()
		f := startFerry(t, withJSON(""), nil)
		// An HTTP/2-only server's first bytes: a SETTINGS frame, then a
		// GOAWAY with PROTOCOL_ERROR.
		const h2 = "\x00\x00\x00\x04\x00\x00\x00\x00\x00" + "\x00\x00\x08\x07\x00\x00\x00\x00\x00" + "\x00\x00\x00\x00\x00\x00\x00\x01"
		for _, tt := range []struct {
			name   string
			answer string // what the origin writes after the request head
		}{
			{"closed before answering", ""},
			{"origin speaks HTTP/2", h2},
		} {
			t.Run(tt.name, func(t *testing.T) {
				o := newOrigin(t, func(c *net.TCPConn, br *bufio.Reader) {
					if _, err := readHead(br); err != nil {
						return
					}
					io.WriteString(c, tt.answer)
					c.CloseWrite()
					io.Copy(io.Discard, br)
				})
				rc := dialRaw(t, f.addr)
				rc.send(t, fmt.Sprintf("GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", o.Addr, o.Addr))
				resp, body := rc.response(t, http.MethodGet)
				t.Logf("client got %q %q", resp.Status, body)
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("got %q, want 502", resp.Status)
				}
				// Whatever the wording, the body says more than the
				// generic "general failure" today's bodies end with.
				if b := strings.TrimSpace(body); b == "" || strings.HasSuffix(b, "general failure") {
					t.Errorf("502 body %q does not name the cause", body)
				}
			})
		}
	})

	// An origin that dies mid-body (it promised more than it sent) ends
	// the request with reason "upstream closed", not "client closed".
	t.Run("upstream died mid-body", func(t *testing.T) {
		t.Parallel()
		f := startFerry(t, withJSON(""), nil)
		o := newOrigin(t, func(c *net.TCPConn, br *bufio.Reader) {
			if _, err := readHead(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly this much")
		})
		rc := dialRaw(t, f.addr)
		rc.send(t, fmt.Sprintf("GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", o.Addr, o.Addr))
		if _, _, err := rc.tryResponse(http.MethodGet); err == nil {
			t.Error("client read a whole body the origin never sent")
		}
		l := f.waitLine(t, "access", byTarget(o.Addr))
		if got := l.str("reason"); got != "upstream closed" {
			t.Errorf("access reason: got %q, want %q: %v", got, "upstream closed", l)
		}
	})
}
