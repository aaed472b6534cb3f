//go:build linux

package test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"ferry/test/testkit"
)

// slowUploadScript uploads through ferry with Python requests, over one
// Session: argv[1] is ferry's address, argv[2] ferry's CA, argv[3] the
// origin's address (the tunnel's target), argv[4] the path of a GET
// before the upload ("/keep", or "/close", whose answer makes the origin
// close the tunnel's connection to it), argv[5] the gap between pieces
// in milliseconds. It prints one JSON line.
//
// The GET comes first either way: requests 2.28 (Debian's
// python3-requests) sends a chunked body on a new connection without its
// CONNECT (the tunnel is made in urlopen, which that path skips), so the
// upload must find the tunnel open.
//
// ferry does not resolve name.test: CONNECT names the origin's address,
// and TLS inside says name.test (server_hostname, also the name the
// leaf is checked for), as curl's --connect-to does in the other mitm
// tests. The generator body goes chunked, one piece every gap.
const slowUploadScript = `
import hashlib, json, os, sys, time, requests, requests.adapters
proxy, bundle, origin, first, gap = sys.argv[1:6]
class NameTest(requests.adapters.HTTPAdapter):
    def proxy_manager_for(self, proxy, **kw):
        kw["server_hostname"] = "name.test"
        return super().proxy_manager_for(proxy, **kw)
s = requests.Session()
s.trust_env = False
s.mount("https://", NameTest())
base = "https://" + origin
opts = dict(proxies={"https": "http://" + proxy}, verify=bundle, timeout=30,
            headers={"Host": "name.test:" + origin.rsplit(":", 1)[1]})
r = s.get(base + first, **opts)
out = {"get": "%d %s" % (r.status_code, r.text)}
sent = hashlib.sha256()
def body():
    for _ in range(12):
        time.sleep(int(gap) / 1000)
        piece = os.urandom(4096)
        sent.update(piece)
        yield piece
start = time.monotonic()
r = s.post(base + "/upload", data=body(), **opts)
out.update(status=r.status_code, answer=r.text.strip(), sent=sent.hexdigest(),
           secs=round(time.monotonic() - start, 2))
pms = s.get_adapter(base).proxy_manager.values()
out["tunnels"] = sum(pm.pools[k].num_connections for pm in pms for k in pm.pools.keys())
print(json.dumps(out))
`

// TestPythonFlowSlowUpload: Python requests uploads 48 KiB through an
// intercepted tunnel in 12 pieces idle_timeout/3 apart (4 s in all, four
// times idle_timeout, never silent for it), on the tunnel's first
// connection to the origin and, after the origin closed that one
// (Connection: close), on the one ferry's redialer made for the same
// client connection. Both reach the origin whole with a 200; the second
// was cut with a 502 before d367afa (server.TestFlowSlowUpload is the
// in-process test).
func TestPythonFlowSlowUpload(t *testing.T) {
	t.Parallel()
	testkit.NeedBin(t, "python3")
	const idle = time.Second
	dir := t.TempDir()
	originCA, certFile, keyFile := testkit.WritePKI(t, dir, "name.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f, ferryCA := mitmIdleFerry(t, dir, originCA, idle)
	for _, tt := range []struct {
		name, get string
		conns     int64 // the origin's connections: the first, and the redialed one
	}{
		{"first connection", "/keep", 1},
		{"redialed connection", "/close", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			origin, conns := uploadOrigin(t, cert)
			out := runPython(t, slowUploadScript, f.addr, ferryCA, origin, tt.get, msArg(idle/3))
			var r struct {
				Get, Answer, Sent string
				Status, Tunnels   int
				Secs              float64
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("python printed %q: %v", out, err)
			}
			t.Logf("%+v", r)
			if r.Get != "200 ok" {
				t.Fatalf("GET %s: %q, want 200 ok", tt.get, r.Get)
			}
			if want := fmt.Sprintf("%d %s", 12*4096, r.Sent); r.Status != 200 || r.Answer != want {
				t.Fatalf("upload: %d %q, want 200 and %q (the origin got every byte)", r.Status, r.Answer, want)
			}
			// One tunnel for the script: the upload went on the GET's
			// client connection, and, after /close, through a redialed
			// upstream connection.
			if r.Tunnels != 1 || conns.Load() != tt.conns {
				t.Fatalf("requests opened %d tunnels and the origin saw %d connections, want 1 and %d", r.Tunnels, conns.Load(), tt.conns)
			}
		})
	}
}

// uploadOrigin is an HTTPS origin (HTTP/1.1 only, cert for name.test):
// /keep answers "ok"; /close too, and closes the connection; /upload
// answers the body's length and SHA-256. It counts the connections it
// accepted.
func uploadOrigin(t *testing.T, cert tls.Certificate) (addr string, conns *atomic.Int64) {
	t.Helper()
	conns = new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/keep" || r.URL.Path == "/close":
			if r.URL.Path == "/close" {
				w.Header().Set("Connection", "close")
			}
			io.WriteString(w, "ok")
		case r.URL.Path == "/upload" && r.Method == "POST":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, fmt.Sprintf("after %d bytes: %v", n, err), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, cs http.ConnState) {
		if cs == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ReadHeaderTimeout = 30 * time.Second
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), conns
}
