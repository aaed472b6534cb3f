//go:build linux

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/test/testkit"
)

// needTshark returns tshark's path. Without it the test is skipped, except
// under CI=true, where scripts/test.sh has installed it and its absence is
// a failure.
func needTshark(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("tshark"); err == nil {
		return path
	}
	if path := "/usr/bin/tshark"; testkit.IsFile(path) {
		return path
	}
	testkit.Unmet(t, "tshark not installed (apt-get install tshark, or run scripts/test.sh)")
	return ""
}

// tshark runs tshark with args and returns its stdout; it fails the test
// if tshark fails. Its stderr (a warning when run as root) is ignored
// unless it fails.
func tshark(t *testing.T, path string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %q: %v\nstderr: %s", args, err, stderr.String())
	}
	return stdout.String()
}

// captureConfig is a JSON-logging proxy listener with the log and capture
// plugins, recording whole channels to file.
func captureConfig(file string) func(addr string) string {
	return func(addr string) string {
		return fmt.Sprintf(`[log]
format = "json"

[[listener]]
name = "cap"
listen = %q
protocols = ["http", "socks5", "socks4"]
plugins = ["log", "capture"]

[[plugin]]
name = "log"

[[plugin]]
name = "capture"
file = %q
max_bytes = "0"
`, addr, file)
	}
}

// followed is one TCP stream as tshark's "follow" shows it.
type followed struct {
	node0, node1 string // "ADDR:PORT" of the client and of the target
	up, down     []byte // bytes from node 0 and from node 1
}

// followRaw runs tshark -z follow,tcp,raw,STREAM on file: every
// segment's bytes in hex, one line each, the target's indented by a tab.
func followRaw(t *testing.T, path, file string, stream int) followed {
	t.Helper()
	out := tshark(t, path, "-r", file, "-q", "-z", fmt.Sprintf("follow,tcp,raw,%d", stream))
	var f followed
	body := false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Node 0: "):
			f.node0 = strings.TrimPrefix(line, "Node 0: ")
		case strings.HasPrefix(line, "Node 1: "):
			f.node1 = strings.TrimPrefix(line, "Node 1: ")
			body = true
		case strings.HasPrefix(line, "====="):
			body = false
		case body && line != "":
			dst := &f.up
			if strings.HasPrefix(line, "\t") {
				dst = &f.down
			}
			b, err := hex.DecodeString(strings.TrimPrefix(line, "\t"))
			if err != nil {
				t.Fatalf("tshark follow raw line %.60q: %v", line, err)
			}
			*dst = append(*dst, b...)
		}
	}
	if f.node0 == "" || f.node1 == "" {
		t.Fatalf("tshark follow found no stream %d:\n%.2000s", stream, out)
	}
	return f
}

// checkCaptureClean runs tshark with IP and TCP checksum validation and
// fails on a bad checksum, a malformed packet, an expert warning or error,
// or a TCP analysis flag (retransmission, lost segment, unseen ACK...):
// a synthetic capture should look like a perfect connection. The one flag
// allowed is "port numbers reused": the plain HTTP requests of one client
// connection are consecutive connections between the same ends.
func checkCaptureClean(t *testing.T, path, file string) {
	t.Helper()
	validate := []string{"-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"}
	list := tshark(t, path, append([]string{"-r", file}, validate...)...)
	if strings.TrimSpace(list) == "" {
		t.Fatalf("tshark -r %s lists no packets", file)
	}
	for _, line := range strings.Split(list, "\n") {
		l := strings.ReplaceAll(line, "[TCP segment of a reassembled PDU]", "")
		l = strings.ReplaceAll(l, "[TCP Port numbers reused]", "")
		for _, bad := range []string{"INCORRECT", "Malformed", "[TCP ", "Bad", "Unknown"} {
			if strings.Contains(l, bad) {
				t.Errorf("tshark flags a packet (%q):\n%s", bad, line)
			}
		}
	}
	expert := tshark(t, path, append([]string{"-r", file, "-q", "-z", "expert,warn"}, validate...)...)
	if strings.Contains(expert, "Errors") || strings.Contains(expert, "Warns") {
		t.Errorf("tshark expert info has warnings or errors:\n%s", expert)
	}
}

// tsharkTrace returns TCP stream n of file as tshark reads it, in the
// form of the capture package's tests: "c10" for 10 bytes from the client
// (consecutive segments from one side merged), "T" for the target's FIN,
// separated by spaces.
func tsharkTrace(t *testing.T, path, file string, n int) string {
	t.Helper()
	out := tshark(t, path, "-r", file, "-Y", fmt.Sprintf("tcp.stream == %d", n),
		"-T", "fields", "-e", "tcp.srcport", "-e", "tcp.len", "-e", "tcp.flags.fin")
	var trace []string
	var client string
	run, runFrom := 0, ""
	flush := func() {
		if run > 0 {
			trace = append(trace, fmt.Sprintf("%s%d", runFrom, run))
		}
		run, runFrom = 0, ""
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			t.Fatalf("tshark fields line %q, want port, length, FIN", line)
		}
		if client == "" {
			client = f[0] // the SYN
		}
		from := "t"
		if f[0] == client {
			from = "c"
		}
		if size, _ := strconv.Atoi(f[1]); size > 0 {
			if from != runFrom {
				flush()
			}
			run, runFrom = run+size, from
		}
		if fin := strings.ToLower(f[2]); fin == "1" || fin == "true" {
			flush()
			trace = append(trace, strings.ToUpper(from))
		}
	}
	flush()
	return strings.Join(trace, " ")
}

// comments returns the packet comments of file, one per line.
func comments(t *testing.T, path, file string) string {
	t.Helper()
	return tshark(t, path, "-r", file, "-Y", "frame.comment", "-T", "fields", "-e", "frame.comment")
}

// TestCapture relays known bytes both ways through ferry with the capture
// plugin, stops ferry so the file is complete, and checks with tshark that
// the file shows exactly those bytes, as a clean TCP connection.
func TestCapture(t *testing.T) {
	t.Parallel()
	ts := needTshark(t)

	v6 := true
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		v6 = false
	} else {
		ln.Close()
	}

	tests := []struct {
		name string
		dial tunnelDialer
		// listen is the target's listening address.
		listen string
		// target is what the client asks for; %PORT% is the target's port.
		target string
		// wantNode1 checks the target's address as the capture shows it.
		wantNode1 func(ap netip.AddrPort) bool
		// wantComment is in a packet comment; %PORT% is the target's port.
		wantComment string
		needV6      bool
	}{
		{
			name: "connect ipv4", dial: testkit.DialCONNECT, listen: "127.0.0.1:0", target: "127.0.0.1:%PORT%",
			wantNode1: func(ap netip.AddrPort) bool { return ap.Addr() == netip.MustParseAddr("127.0.0.1") },
		},
		{
			// Shown at the address ferry connected to, named in a comment.
			name: "socks5 name", dial: testkit.DialSOCKS5, listen: "127.0.0.1:0", target: "localhost:%PORT%",
			wantNode1:   func(ap netip.AddrPort) bool { return ap.Addr() == netip.MustParseAddr("127.0.0.1") },
			wantComment: "(connected to 127.0.0.1:%PORT%)",
		},
		{
			name: "connect ipv6 target", dial: testkit.DialCONNECT, listen: "[::1]:0", target: "[::1]:%PORT%", needV6: true,
			wantNode1: func(ap netip.AddrPort) bool { return ap.Addr() == netip.IPv6Loopback() },
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.needV6 && !v6 {
				t.Skip("no IPv6 loopback")
			}
			// Known bytes, more than one segment of the synthetic
			// connection each way, and text that follow,tcp,ascii shows.
			req := append([]byte("HELLO FROM THE CLIENT\n"), readAll(t, newStream(uint64(10*i+1), 100_000))...)
			resp := append([]byte("GREETINGS FROM THE TARGET\n"), readAll(t, newStream(uint64(10*i+2), 200_000))...)

			got := make(chan []byte, 1)
			ln, err := net.Listen("tcp", tt.listen)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := ln.Accept()
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				deadlineAfter(c, 30*time.Second)
				b := make([]byte, len(req))
				n, _ := io.ReadFull(c, b)
				got <- b[:n]
				c.Write(resp)
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			}()
			t.Cleanup(func() { ln.Close(); wg.Wait() })
			port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
			asked := strings.ReplaceAll(tt.target, "%PORT%", port)

			file := filepath.Join(t.TempDir(), "ferry.pcapng")
			f := startFerry(t, captureConfig(file), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := tt.dial(ctx, f.addr, asked)
			if err != nil {
				t.Fatalf("open tunnel to %s: %v", asked, err)
			}
			deadlineAfter(c, 30*time.Second)
			if _, err := c.Write(req); err != nil {
				t.Fatalf("client write: %v", err)
			}
			back, err := io.ReadAll(c)
			c.Close()
			if err != nil {
				t.Fatalf("client read: %v", err)
			}
			if !bytes.Equal(back, resp) {
				t.Fatalf("client got %d bytes, want the target's %d", len(back), len(resp))
			}
			if b := <-got; !bytes.Equal(b, req) {
				t.Fatalf("target got %d bytes, want the client's %d", len(b), len(req))
			}
			// The access line follows capture's OnClose (close hooks run
			// in reverse order); SIGTERM then flushes and closes the file.
			f.waitLine(t, "access", byTarget(asked))
			if code := f.stop(t); code != 0 {
				t.Fatalf("ferry exited %d after SIGTERM, want 0", code)
			}

			fw := followRaw(t, ts, file, 0)
			if !bytes.Equal(fw.up, req) {
				t.Errorf("capture, client to target: %d bytes, want exactly the %d relayed", len(fw.up), len(req))
			}
			if !bytes.Equal(fw.down, resp) {
				t.Errorf("capture, target to client: %d bytes, want exactly the %d relayed", len(fw.down), len(resp))
			}
			node1, err := netip.ParseAddrPort(fw.node1)
			if err != nil || int(node1.Port()) != ln.Addr().(*net.TCPAddr).Port || !tt.wantNode1(node1) {
				t.Errorf("capture shows the target as %q (%v), not as expected for %s", fw.node1, err, asked)
			}
			if node0, err := netip.ParseAddrPort(fw.node0); err != nil || !node0.Addr().Unmap().IsLoopback() {
				t.Errorf("capture shows the client as %q, want a loopback address", fw.node0)
			}

			ascii := tshark(t, ts, "-r", file, "-q", "-z", "follow,tcp,ascii,0")
			for _, want := range []string{"HELLO FROM THE CLIENT", "GREETINGS FROM THE TARGET"} {
				if !strings.Contains(ascii, want) {
					t.Errorf("follow,tcp,ascii lacks %q:\n%.1000s", want, ascii)
				}
			}
			checkCaptureClean(t, ts, file)
			// The target half-closed first, after its answer; the client
			// closed once it had read it all.
			if got, want := tsharkTrace(t, ts, file, 0), fmt.Sprintf("c%d t%d T C", len(req), len(resp)); got != want {
				t.Errorf("capture, as tshark reads it: %q, want %q", got, want)
			}

			cs := comments(t, ts, file)
			for _, want := range []string{"target " + asked, "closed: upstream closed",
				fmt.Sprintf("%d bytes client to target, %d target to client", len(req), len(resp)),
				strings.ReplaceAll(tt.wantComment, "%PORT%", port)} {
				if !strings.Contains(cs, want) {
					t.Errorf("packet comments lack %q:\n%s", want, cs)
				}
			}
		})
	}
}

// TestCaptureCurl sends a plain HTTP request with curl through ferry and
// finds it, and the answer, in the capture.
func TestCaptureCurl(t *testing.T) {
	t.Parallel()
	ts := needTshark(t)
	needCurl(t)
	web := testkit.HTTPTarget(t)
	file := filepath.Join(t.TempDir(), "ferry.pcapng")
	f := startFerry(t, captureConfig(file), nil)
	if got := curl(t, "-x", "http://"+f.addr, web.URL+"/capture-me"); got != testkit.TargetBody {
		t.Fatalf("curl body = %q, want %q", got, testkit.TargetBody)
	}
	if code := f.stop(t); code != 0 {
		t.Fatalf("ferry exited %d after SIGTERM, want 0", code)
	}
	fw := followRaw(t, ts, file, 0)
	if !bytes.Contains(fw.up, []byte("GET ")) || !bytes.Contains(fw.up, []byte("/capture-me HTTP/1.1\r\n")) {
		t.Errorf("capture, client to target: no GET of /capture-me in %q", fw.up)
	}
	if !bytes.HasPrefix(fw.down, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(fw.down, []byte(testkit.TargetBody)) {
		t.Errorf("capture, target to client: got %q, want a 200 response ending with the body", fw.down)
	}
	checkCaptureClean(t, ts, file)
	// tshark's HTTP dissector finds the exchange on the target's port.
	port := web.Listener.Addr().(*net.TCPAddr).Port
	if out := tshark(t, ts, "-r", file, "-d", fmt.Sprintf("tcp.port==%d,http", port), "-Y", "http.response.code == 200"); strings.TrimSpace(out) == "" {
		t.Error("tshark finds no HTTP 200 response in the capture")
	}
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCaptureHTTPSessions checks the plain HTTP sessions of one client
// connection: each request is its own connection in the capture, closed
// by the client's FIN when the request has been sent and the target's when
// the response has; a request that upgrades becomes a tunnel whose ends
// are those of the streams.
func TestCaptureHTTPSessions(t *testing.T) {
	t.Parallel()
	ts := needTshark(t)

	t.Run("keep-alive", func(t *testing.T) {
		t.Parallel()
		web := testkit.HTTPTarget(t)
		file := filepath.Join(t.TempDir(), "ferry.pcapng")
		f := startFerry(t, captureConfig(file), nil)
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		deadlineAfter(c, 30*time.Second)
		br := bufio.NewReader(c)
		paths := []string{"/one", "/two"}
		for _, p := range paths {
			fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: %s\r\n\r\n", web.URL, p, web.Listener.Addr())
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("GET %s: %v", p, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(body) != testkit.TargetBody || resp.Close {
				t.Fatalf("GET %s: body %q, %v, close %v; want %q on a kept-alive connection", p, body, err, resp.Close, testkit.TargetBody)
			}
		}
		c.Close()
		// The access lines follow capture's OnClose.
		waitFor(t, func() bool { return len(f.lines("access", byTarget(web.Listener.Addr().String()))) == len(paths) })
		if code := f.stop(t); code != 0 {
			t.Fatalf("ferry exited %d after SIGTERM, want 0", code)
		}

		checkCaptureClean(t, ts, file)
		var client string
		for i, p := range paths {
			fw := followRaw(t, ts, file, i)
			if !bytes.HasPrefix(fw.up, []byte("GET "+p+" HTTP/1.1\r\n")) || !bytes.HasSuffix(fw.down, []byte(testkit.TargetBody)) {
				t.Errorf("stream %d: %q then %q, want GET %s and its response", i, fw.up, fw.down, p)
			}
			if i == 0 {
				client = fw.node0
			} else if fw.node0 != client {
				t.Errorf("stream %d: client %s, want %s, the same client connection", i, fw.node0, client)
			}
			if fw.node1 != web.Listener.Addr().String() {
				t.Errorf("stream %d: target %s, want %s", i, fw.node1, web.Listener.Addr())
			}
			want := fmt.Sprintf("c%d C t%d T", len(fw.up), len(fw.down))
			if got := tsharkTrace(t, ts, file, i); got != want {
				t.Errorf("stream %d: %q, want %q", i, got, want)
			}
		}
	})

	t.Run("upgrade", func(t *testing.T) {
		t.Parallel()
		// The target switches to an echo of lines on request.
		target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
			deadlineAfter(c, 30*time.Second)
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil || req.Header.Get("Upgrade") != "echo" {
				io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				return
			}
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			io.Copy(c, br)
		})
		file := filepath.Join(t.TempDir(), "ferry.pcapng")
		f := startFerry(t, captureConfig(file), nil)
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		deadlineAfter(c, 30*time.Second)
		fmt.Fprintf(c, "GET http://%s/echo HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", target.Addr, target.Addr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v, %v; want 101", resp, err)
		}
		io.WriteString(c, "ping\n")
		if line, err := br.ReadString('\n'); line != "ping\n" {
			t.Fatalf("echo: got %q, %v; want ping", line, err)
		}
		c.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
			t.Fatalf("after the client's end: %q, %v; want EOF", rest, err)
		}
		c.Close()
		f.waitLine(t, "access", byTarget(target.Addr))
		if code := f.stop(t); code != 0 {
			t.Fatalf("ferry exited %d after SIGTERM, want 0", code)
		}

		checkCaptureClean(t, ts, file)
		fw := followRaw(t, ts, file, 0)
		if !bytes.HasPrefix(fw.up, []byte("GET /echo HTTP/1.1\r\n")) || !bytes.HasSuffix(fw.up, []byte("\r\n\r\nping\n")) {
			t.Errorf("client to target: %q, want the request, then ping", fw.up)
		}
		if !bytes.HasPrefix(fw.down, []byte("HTTP/1.1 101 Switching Protocols\r\n")) || !bytes.HasSuffix(fw.down, []byte("\r\n\r\nping\n")) {
			t.Errorf("target to client: %q, want the 101 response, then ping", fw.down)
		}
		// Neither side ended with the request or the 101 response: the
		// client's FIN comes when it half-closed the tunnel, the target's
		// after.
		head := len(fw.down) - len("ping\n")
		want := fmt.Sprintf("c%d t%d c5 t5 C T", len(fw.up)-len("ping\n"), head)
		if got := tsharkTrace(t, ts, file, 0); got != want {
			t.Errorf("capture, as tshark reads it: %q, want %q", got, want)
		}
	})
}
