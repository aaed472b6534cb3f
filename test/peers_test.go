//go:build linux

package test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"ferry/test/testkit"
)

// Parent proxies from Debian that the upstream tests put behind ferry:
// dante and microsocks speak SOCKS5, tinyproxy and squid HTTP CONNECT (and
// plain HTTP proxying), squid also over TLS. Each runs in the foreground in
// its own process group (startPeer) on a free loopback port, with its
// config and logs in a temp dir of the test; the logs show which targets
// went through which parent.

// The system user and password dante's username method accepts: dante
// checks SOCKS5 credentials against the system password database.
const (
	danteUser = "ferrytest"
	dantePass = "s3cret"
)

var danteAccount struct {
	once sync.Once
	err  error
}

// ensureDanteUser creates danteUser with dantePass, once per test binary;
// a user left by an earlier run is reused and its password reset. Without
// root the test is skipped.
func ensureDanteUser(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("dante checks SOCKS5 passwords against system users; creating one needs root")
	}
	useradd, chpasswd := testkit.NeedBin(t, "useradd"), testkit.NeedBin(t, "chpasswd")
	danteAccount.once.Do(func() {
		exists := func() bool { return exec.Command("id", "-u", danteUser).Run() == nil }
		if !exists() {
			out, err := exec.Command(useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", danteUser).CombinedOutput()
			if err != nil && !exists() { // another test binary may have just made it
				danteAccount.err = fmt.Errorf("useradd %s: %v: %s", danteUser, err, out)
				return
			}
		}
		cmd := exec.Command(chpasswd)
		cmd.Stdin = strings.NewReader(danteUser + ":" + dantePass + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			danteAccount.err = fmt.Errorf("chpasswd %s: %v: %s", danteUser, err, out)
		}
	})
	if danteAccount.err != nil {
		t.Fatal(danteAccount.err)
	}
}

// peerDir is a temp dir for a peer's files that peers which drop
// privileges (squid to proxy, dante to nobody) can use too: t.TempDir
// makes it inside a per-test dir of mode 0700.
func peerDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startDante runs danted as a SOCKS5 parent on a free loopback port and
// returns its address and its log file, which has a "tcp/connect" line
// for every target it connects to. It relays UDP ASSOCIATE too. With
// auth it requires username and password (danteUser, dantePass).
func startDante(t *testing.T, auth bool) (addr, logFile string) {
	t.Helper()
	danted := testkit.NeedBin(t, "danted")
	method, users := "none", ""
	if auth {
		ensureDanteUser(t)
		method = "username"
	}
	if os.Geteuid() == 0 {
		// Root to read the shadow file, nobody for the rest.
		users = "user.privileged: root\nuser.unprivileged: nobody\n"
	}
	dir := peerDir(t)
	addr = freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	logFile = filepath.Join(dir, "danted.log")
	conf := filepath.Join(dir, "danted.conf")
	// The rule keywords each need a line of their own.
	writeFile(t, conf, fmt.Sprintf(`logoutput: %s
internal: 127.0.0.1 port = %s
external: 127.0.0.1
clientmethod: none
socksmethod: %s
%sclient pass {
	from: 127.0.0.0/8 to: 0.0.0.0/0
	log: error connect disconnect
}
socks pass {
	from: 127.0.0.0/8 to: 0.0.0.0/0
	command: connect udpassociate
	log: error connect disconnect
}
socks pass {
	from: 0.0.0.0/0 to: 127.0.0.0/8
	command: udpreply
	log: error connect disconnect
}
`, logFile, port, method, users))
	startPeer(t, addr, danted, "-f", conf, "-p", filepath.Join(dir, "danted.pid"))
	return addr, logFile
}

// danteAddr is how dante's log writes host:port: host.port.
func danteAddr(hostport string) string {
	host, port, _ := net.SplitHostPort(hostport)
	return host + "." + port
}

// startMicrosocks runs microsocks, a SOCKS5 parent without access log, on
// a free loopback port.
func startMicrosocks(t *testing.T) string {
	t.Helper()
	microsocks := testkit.NeedBin(t, "microsocks")
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	startPeer(t, addr, microsocks, "-i", "127.0.0.1", "-p", port)
	return addr
}

// startTinyproxy runs tinyproxy as an HTTP parent (CONNECT to any port,
// from 127.0.0.1) and returns its address and its log file, which has a
// "Request" line naming each CONNECT target or proxied URL.
func startTinyproxy(t *testing.T) (addr, logFile string) {
	t.Helper()
	tinyproxy := testkit.NeedBin(t, "tinyproxy")
	dir := peerDir(t)
	addr = freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	logFile = filepath.Join(dir, "tinyproxy.log")
	conf := filepath.Join(dir, "tinyproxy.conf")
	// No ConnectPort line: CONNECT may go to any port.
	writeFile(t, conf, fmt.Sprintf(`Port %s
Listen 127.0.0.1
Allow 127.0.0.1
Timeout 120
MaxClients 100
LogFile %q
LogLevel Connect
`, port, logFile))
	startPeer(t, addr, tinyproxy, "-d", "-c", conf)
	return addr, logFile
}

// startSquid runs squid as an HTTP parent that requires Basic credentials
// user:pass and returns its address and its access log, which has a line
// for each CONNECT target or proxied URL (written when the transaction
// ends: for a tunnel, once it closed). hosts is squid's hosts file (lines
// "127.0.0.1 www.a.test"; "" for none), so that test names resolve.
func startSquid(t *testing.T, user, pass, hosts string) (addr, logFile string) {
	t.Helper()
	addr, logFile, _ = runSquid(t, user, pass, hosts, false)
	return addr, logFile
}

// startHTTPSParent runs squid as a parent that speaks CONNECT over TLS
// (https_port), with a certificate for 127.0.0.1 and localhost from a test
// CA, and Basic credentials user:pass. It returns its address, the CA's
// PEM file and squid's access log.
func startHTTPSParent(t *testing.T, user, pass string) (addr, caFile, logFile string) {
	t.Helper()
	addr, logFile, caFile = runSquid(t, user, pass, "", true)
	return addr, caFile, logFile
}

func runSquid(t *testing.T, user, pass, hosts string, overTLS bool) (addr, logFile, caFile string) {
	t.Helper()
	squid := testkit.NeedBin(t, "squid")
	dir := peerDir(t)
	addr = freeAddr(t)
	port := "http_port " + addr
	if overTLS {
		var cert, key string
		caFile, cert, key = testkit.WritePKI(t, dir)
		port = fmt.Sprintf("https_port %s tls-cert=%s tls-key=%s", addr, cert, key)
	}
	hostsLine := ""
	if hosts != "" {
		hostsFile := filepath.Join(dir, "hosts")
		writeFile(t, hostsFile, hosts)
		hostsLine = "hosts_file " + hostsFile
	}
	passwd := filepath.Join(dir, "passwd")
	writeFile(t, passwd, htpasswdLine(t, user, pass)) // basic_ncsa_auth takes bcrypt
	logFile = filepath.Join(dir, "access.log")
	conf := filepath.Join(dir, "squid.conf")
	// No cache at all; a short shutdown_lifetime (default 30s) so that
	// SIGTERM ends it within startPeer's grace; no pinger helper. Without
	// the usual "deny CONNECT !SSL_ports", CONNECT may go to any port.
	writeFile(t, conf, fmt.Sprintf(`%s
pid_filename %[2]s/squid.pid
access_log stdio:%[3]s
cache_log %[2]s/cache.log
cache_store_log none
coredump_dir %[2]s
netdb_filename none
cache deny all
cache_mem 8 MB
shutdown_lifetime 0 seconds
pinger_enable off
visible_hostname ferry-test-squid
cache_effective_user proxy
%[4]s
auth_param basic program /usr/lib/squid/basic_ncsa_auth %[5]s
auth_param basic realm ferry-test
acl authed proxy_auth REQUIRED
http_access allow localhost authed
http_access deny all
`, port, dir, logFile, hostsLine, passwd))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "cache.log"))
			t.Logf("squid cache.log:\n%s", b)
		}
	})
	startPeer(t, addr, squid, "-N", "-f", conf)
	return addr, logFile, caFile
}

// newSilentParent is a parent proxy that accepts connections and never
// answers, for timeouts. A connection ends when the other side closes it
// (or after 30s).
func newSilentParent(t *testing.T) string {
	t.Helper()
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		deadlineAfter(c, 30*time.Second)
		io.Copy(io.Discard, c)
	}).Addr
}

// readLog returns a peer's log file ("" while it does not exist).
func readLog(file string) string {
	b, _ := os.ReadFile(file)
	return string(b)
}

// logged reports whether a peer's log names addr (host:port; for dante
// use danteAddr), and not as the start of a longer address or port.
func logged(file, addr string) bool {
	re := regexp.MustCompile(`(^|[^0-9.])` + regexp.QuoteMeta(addr) + `([^0-9]|$)`)
	return re.MatchString(readLog(file))
}

// waitLogged waits until a peer's log names addr.
func waitLogged(t *testing.T, file, addr string) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("no %s in %s:\n%s", addr, file, readLog(file))
		}
	}()
	waitFor(t, func() bool { return logged(file, addr) })
}

// socksGet GETs url through the SOCKS5 proxy at parent with
// golang.org/x/net/proxy's client (auth nil: no credentials) and returns
// the body.
func socksGet(parent string, auth *proxy.Auth, url string) (string, error) {
	d, err := proxy.SOCKS5("tcp", parent, auth, proxy.Direct)
	if err != nil {
		return "", err
	}
	tr := &http.Transport{DialContext: d.(proxy.ContextDialer).DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: testkit.DialTimeout}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// connectGet asks the HTTP proxy at the other end of c for a tunnel to
// target (an HTTP server), with Basic credentials userinfo ("user:pass";
// "" sends none); if the proxy answers 200, it GETs / through the tunnel.
// It returns the CONNECT status and the body.
func connectGet(c net.Conn, target, userinfo string) (int, string, error) {
	deadlineAfter(c, testkit.DialTimeout)
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Host: target}, Host: target, Header: http.Header{}}
	if userinfo != "" {
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(userinfo)))
	}
	if err := req.Write(c); err != nil {
		return 0, "", err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return 0, "", fmt.Errorf("read CONNECT response: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, "", nil
	}
	get := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/"}, Host: target, Close: true}
	if err := get.Write(c); err != nil {
		return resp.StatusCode, "", err
	}
	resp, err = http.ReadResponse(br, get)
	if err != nil {
		return http.StatusOK, "", fmt.Errorf("read GET response through the tunnel: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return http.StatusOK, string(body), err
}

// checkConnectGet runs connectGet over c and wants a 200 and the target's
// body.
func checkConnectGet(t *testing.T, c net.Conn, target, userinfo string) {
	t.Helper()
	defer c.Close()
	status, body, err := connectGet(c, target, userinfo)
	if err != nil || status != http.StatusOK || body != testkit.TargetBody {
		t.Fatalf("CONNECT %s: status %d, body %q, err %v; want 200 and %q", target, status, body, err, testkit.TargetBody)
	}
}

// connectStatus runs connectGet to a new connection to an HTTP proxy and
// returns the CONNECT status only.
func connectStatus(t *testing.T, proxyAddr, target, userinfo string) int {
	t.Helper()
	c, err := testkit.DialTCP(context.Background(), proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	status, _, err := connectGet(c, target, userinfo)
	if err != nil {
		t.Fatalf("CONNECT %s via %s: %v", target, proxyAddr, err)
	}
	return status
}

// TestPeerDante: dante relays a Go SOCKS5 client to a local target, with
// and without username/password, refuses wrong or missing credentials,
// and logs the target.
func TestPeerDante(t *testing.T) {
	t.Parallel()
	web := testkit.HTTPTarget(t)
	webAddr := web.Listener.Addr().String()
	url := "http://" + webAddr + "/"
	t.Run("no auth", func(t *testing.T) {
		t.Parallel()
		addr, log := startDante(t, false)
		if body, err := socksGet(addr, nil, url); err != nil || body != testkit.TargetBody {
			t.Fatalf("GET via dante: body %q, err %v", body, err)
		}
		waitLogged(t, log, danteAddr(webAddr))
	})
	t.Run("username", func(t *testing.T) {
		t.Parallel()
		addr, log := startDante(t, true)
		if body, err := socksGet(addr, &proxy.Auth{User: danteUser, Password: dantePass}, url); err != nil || body != testkit.TargetBody {
			t.Fatalf("GET via dante with the right password: body %q, err %v", body, err)
		}
		waitLogged(t, log, danteAddr(webAddr))
		for _, auth := range []*proxy.Auth{{User: danteUser, Password: "wrong"}, nil} {
			if body, err := socksGet(addr, auth, url); err == nil {
				t.Errorf("GET via dante with credentials %+v: got %q, want a refusal", auth, body)
			}
		}
	})
}

// TestPeerMicrosocks: microsocks relays a Go SOCKS5 client.
func TestPeerMicrosocks(t *testing.T) {
	t.Parallel()
	web := testkit.HTTPTarget(t)
	addr := startMicrosocks(t)
	if body, err := socksGet(addr, nil, "http://"+web.Listener.Addr().String()+"/"); err != nil || body != testkit.TargetBody {
		t.Fatalf("GET via microsocks: body %q, err %v", body, err)
	}
}

// TestPeerTinyproxy: tinyproxy opens a CONNECT tunnel to a local port and
// logs the target.
func TestPeerTinyproxy(t *testing.T) {
	t.Parallel()
	web := testkit.HTTPTarget(t)
	webAddr := web.Listener.Addr().String()
	addr, log := startTinyproxy(t)
	c, err := testkit.DialTCP(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	checkConnectGet(t, c, webAddr, "")
	waitLogged(t, log, webAddr)
}

// TestPeerSquid: squid opens a CONNECT tunnel for the right Basic
// credentials only (407 otherwise), resolves names from its hosts file
// and logs each target.
func TestPeerSquid(t *testing.T) {
	t.Parallel()
	web := testkit.HTTPTarget(t)
	webAddr := web.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(webAddr)
	named := net.JoinHostPort("www.a.test", port)
	addr, log := startSquid(t, "alice", "wonder", "127.0.0.1 www.a.test\n")
	for _, target := range []string{webAddr, named} {
		c, err := testkit.DialTCP(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		checkConnectGet(t, c, target, "alice:wonder")
		waitLogged(t, log, target)
	}
	for _, userinfo := range []string{"alice:wrong", ""} {
		if got := connectStatus(t, addr, webAddr, userinfo); got != http.StatusProxyAuthRequired {
			t.Errorf("CONNECT with credentials %q: status %d, want 407", userinfo, got)
		}
	}
}

// TestPeerHTTPSParent: squid's https_port takes CONNECT over TLS with the
// test CA's certificate.
func TestPeerHTTPSParent(t *testing.T) {
	t.Parallel()
	web := testkit.HTTPTarget(t)
	webAddr := web.Listener.Addr().String()
	addr, caFile, log := startHTTPSParent(t, "alice", "wonder")
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(readLog(caFile))) {
		t.Fatalf("no certificate in %s", caFile)
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: testkit.DialTimeout}, Config: &tls.Config{RootCAs: roots}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("TLS to squid's https_port: %v", err)
	}
	checkConnectGet(t, c, webAddr, "alice:wonder")
	waitLogged(t, log, webAddr)
}

// TestPeerSilent: the silent parent accepts and never answers.
func TestPeerSilent(t *testing.T) {
	t.Parallel()
	c, err := testkit.DialTCP(context.Background(), newSilentParent(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	fmt.Fprintf(c, "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
	if n, err := c.Read(make([]byte, 1)); !os.IsTimeout(err) {
		t.Fatalf("silent parent answered: %d bytes, %v", n, err)
	}
}
