//go:build linux

package test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
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

	"ferry/test/testkit"
)

// debugConfig is a debug-level, JSON-logging listener "e2e" serving
// SOCKS5 and HTTP with the log plugin; listenerTail ends the [[listener]]
// table (keys, then its sub-tables), tables follow the [[plugin]].
func debugConfig(listenerTail, tables string) func(addr string) string {
	return func(addr string) string {
		return fmt.Sprintf(`[log]
level = "debug"
format = "json"

[[listener]]
name = "e2e"
listen = %q
protocols = ["socks5", "http"]
plugins = ["log"]
%s

[[plugin]]
name = "log"
%s`, addr, listenerTail, tables)
	}
}

// bindConfig is debugConfig with BIND on; extra goes into the
// [[listener]] table.
func bindConfig(extra, tables string) func(addr string) string {
	return debugConfig("socks5_bind = true\n"+extra, tables)
}

// ftpServer is an FTP-style server in Python: it reads "PORT
// h1,h2,h3,h4,p1,p2" (RFC 959 section 4.1.2) on its control connection,
// connects to that address and sends the file, then says 226.
const ftpServer = `
import socket, sys
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
ls.settimeout(60)
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
c.settimeout(60)
f = c.makefile("rwb")
line = f.readline().decode().strip()
assert line.startswith("PORT "), line
n = [int(x) for x in line[5:].split(",")]
f.write(b"200 PORT command successful\r\n"); f.flush()
d = socket.create_connection((".".join(map(str, n[:4])), n[4] * 256 + n[5]), timeout=60)
with open(sys.argv[1], "rb") as fh:
    d.sendall(fh.read())
d.close()
f.write(b"226 Transfer complete\r\n"); f.flush()
c.close()
`

// ftpClient is the FTP client's side in Python: a control connection to
// the server, and a SOCKS5 BIND through ferry (by hand: PySocks has no
// BIND) whose announced address it sends the server as PORT. It prints
// the received file's SHA-256, its size, and the peer of the second reply.
const ftpClient = `
import hashlib, socket, struct, sys
def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("short read")
        b += c
    return b
def reply(s):
    ver, rep, _, atyp = recvn(s, 4)
    assert ver == 5 and atyp == 1, (ver, atyp)
    host = socket.inet_ntoa(recvn(s, 4))
    port = struct.unpack(">H", recvn(s, 2))[0]
    return rep, host, port
ph, pp = sys.argv[1].rsplit(":", 1)
sh, sp = sys.argv[2].rsplit(":", 1)
ctrl = socket.create_connection((sh, int(sp)), timeout=60)
cf = ctrl.makefile("rb")
s = socket.create_connection((ph, int(pp)), timeout=60)
s.sendall(b"\x05\x01\x00")
assert recvn(s, 2) == b"\x05\x00"
s.sendall(b"\x05\x02\x00\x01" + socket.inet_aton(sh) + struct.pack(">H", 0))
rep, h, p = reply(s)
assert rep == 0, "first reply %d" % rep
ctrl.sendall(("PORT %s,%d,%d\r\n" % (h.replace(".", ","), p >> 8, p & 255)).encode())
assert cf.readline().startswith(b"200")
rep, peer, peerport = reply(s)
assert rep == 0, "second reply %d" % rep
data = bytearray()
while True:
    c = s.recv(65536)
    if not c:
        break
    data += c
assert cf.readline().startswith(b"226")
print(hashlib.sha256(data).hexdigest(), len(data), "%s:%d" % (peer, peerport))
`

// TestSOCKS5BindFTP runs an FTP-style active transfer through ferry: the
// client asks BIND, hands the announced address to the server over its
// own control connection, the server connects there and sends a file,
// which the client receives intact.
func TestSOCKS5BindFTP(t *testing.T) {
	py := testkit.NeedBin(t, "python3")
	file := make([]byte, 1<<20+123)
	rand.Read(file)
	path := filepath.Join(t.TempDir(), "file.bin")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(file)
	f := startFerry(t, bindConfig("", ""), nil)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := exec.CommandContext(ctx, py, "-c", ftpServer, path)
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Wait()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read the server's port: %v", err)
	}
	srvAddr := "127.0.0.1:" + strings.TrimSpace(line)

	out := strings.Fields(runPython(t, ftpClient, f.addr, srvAddr))
	if len(out) != 3 {
		t.Fatalf("client printed %q, want hash, size and peer", out)
	}
	if out[0] != hex.EncodeToString(sum[:]) || out[1] != strconv.Itoa(len(file)) {
		t.Errorf("client got %s bytes hashing to %s, want %d bytes hashing to %x", out[1], out[0], len(file), sum)
	}
	if !strings.HasPrefix(out[2], "127.0.0.1:") {
		t.Errorf("second reply named %s, want the server's address 127.0.0.1:PORT", out[2])
	}
	acc := f.waitLine(t, "access", func(l logLine) bool { return l.str("proto") == "socks5-bind" })
	if acc.str("target") != out[2] {
		t.Errorf("access line target %q, want the peer %s", acc.str("target"), out[2])
	}
	if down, _ := acc.num("down"); down != int64(len(file)) {
		t.Errorf("access line down = %d, want %d", down, len(file))
	}
}

// bindReply reads a SOCKS5 reply and returns REP and BND.ADDR:PORT.
func bindReply(t *testing.T, c net.Conn) (byte, netip.AddrPort) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(logTimeout))
	defer c.SetReadDeadline(time.Time{})
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	n := 4
	if hdr[3] == 4 {
		n = 16
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read reply address: %v", err)
	}
	a, _ := netip.AddrFromSlice(b[:n])
	return hdr[1], netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[n:]))
}

// sendBind greets ferry without auth and sends BIND for dst.
func sendBind(t *testing.T, c net.Conn, dst netip.AddrPort) {
	t.Helper()
	req := []byte{5, 1, 0, 5, 2, 0, 1}
	a4 := dst.Addr().As4()
	req = append(req, a4[:]...)
	req = binary.BigEndian.AppendUint16(req, dst.Port())
	if _, err := c.Write(req); err != nil {
		t.Fatalf("send BIND: %v", err)
	}
	var greet [2]byte
	c.SetReadDeadline(time.Now().Add(logTimeout))
	if _, err := io.ReadFull(c, greet[:]); err != nil || greet != [2]byte{5, 0} {
		t.Fatalf("greeting reply % x, %v; want 05 00", greet, err)
	}
}

// dialBind opens a control connection and asks BIND for dst; it returns
// the connection and the first reply.
func dialBind(t *testing.T, proxy string, dst netip.AddrPort) (net.Conn, byte, netip.AddrPort) {
	t.Helper()
	c, err := testkit.DialTCP(context.Background(), proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sendBind(t, c, dst)
	rep, bnd := bindReply(t, c)
	return c, rep, bnd
}

var anyPeer = netip.MustParseAddrPort("0.0.0.0:0")

// waitClosed waits until nothing accepts on addr.
func waitClosed(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(logTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections after %v", addr, logTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
