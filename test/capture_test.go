package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needTshark returns tshark's path. Without it the test is skipped, except
// under CI=true, where scripts/test.sh has installed it and its absence is
// a failure.
func needTshark(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("tshark"); err == nil {
		return path
	}
	if path := "/usr/bin/tshark"; fileExists(path) {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("tshark not installed under CI=true (scripts/test.sh installs it)")
	}
	t.Skip("tshark not installed (apt-get install tshark, or run scripts/test.sh)")
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

// followRaw runs tshark -z follow,tcp,raw,0 on file: every segment's
// bytes in hex, one line each, the target's indented by a tab.
func followRaw(t *testing.T, path, file string) followed {
	t.Helper()
	out := tshark(t, path, "-r", file, "-q", "-z", "follow,tcp,raw,0")
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
		t.Fatalf("tshark follow found no stream 0:\n%.2000s", out)
	}
	return f
}

// checkCaptureClean runs tshark with IP and TCP checksum validation and
// fails on a bad checksum, a malformed packet, an expert warning or error,
// or a TCP analysis flag (retransmission, lost segment, unseen ACK...):
// a synthetic capture should look like a perfect connection.
func checkCaptureClean(t *testing.T, path, file string) {
	t.Helper()
	validate := []string{"-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"}
	list := tshark(t, path, append([]string{"-r", file}, validate...)...)
	if strings.TrimSpace(list) == "" {
		t.Fatalf("tshark -r %s lists no packets", file)
	}
	for _, line := range strings.Split(list, "\n") {
		l := strings.ReplaceAll(line, "[TCP segment of a reassembled PDU]", "")
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
		needV6    bool
	}{
		{
			name: "connect ipv4", dial: dialCONNECT, listen: "127.0.0.1:0", target: "127.0.0.1:%PORT%",
			wantNode1: func(ap netip.AddrPort) bool { return ap.Addr() == netip.MustParseAddr("127.0.0.1") },
		},
		{
			name: "socks5 name", dial: dialSOCKS5, listen: "127.0.0.1:0", target: "localhost:%PORT%",
			wantNode1: func(ap netip.AddrPort) bool { return netip.MustParsePrefix("198.18.0.0/15").Contains(ap.Addr()) },
		},
		{
			name: "connect ipv6 target", dial: dialCONNECT, listen: "[::1]:0", target: "[::1]:%PORT%", needV6: true,
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
			target := &tcpTarget{ln: ln, addr: ln.Addr().String()}
			target.wg.Add(1)
			go func() {
				defer target.wg.Done()
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
			t.Cleanup(func() { ln.Close(); target.wg.Wait() })
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

			fw := followRaw(t, ts, file)
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

			cs := comments(t, ts, file)
			for _, want := range []string{"target " + asked, "closed: upstream closed",
				fmt.Sprintf("%d bytes client to target, %d target to client", len(req), len(resp))} {
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
	web := newHTTPTarget(t)
	file := filepath.Join(t.TempDir(), "ferry.pcapng")
	f := startFerry(t, captureConfig(file), nil)
	if got := curl(t, "-x", "http://"+f.addr, web.URL+"/capture-me"); got != targetBody {
		t.Fatalf("curl body = %q, want %q", got, targetBody)
	}
	if code := f.stop(t); code != 0 {
		t.Fatalf("ferry exited %d after SIGTERM, want 0", code)
	}
	fw := followRaw(t, ts, file)
	if !bytes.Contains(fw.up, []byte("GET ")) || !bytes.Contains(fw.up, []byte("/capture-me HTTP/1.1\r\n")) {
		t.Errorf("capture, client to target: no GET of /capture-me in %q", fw.up)
	}
	if !bytes.HasPrefix(fw.down, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(fw.down, []byte(targetBody)) {
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
