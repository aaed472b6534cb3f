//go:build linux

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// nodeReport is the one JSON line a harness below prints: how the
// exchange ended ("end", "ok", "closed", "open" or an error), what was
// sent and got, and QuietMs, the time on the client's clock from the
// last byte it sent or got (duplexHarness) or from its upgrade request
// (mitmUpgradeHarness) to that end.
type nodeReport struct {
	How     string `json:"how"`
	Sent    int    `json:"sent"`
	Got     int    `json:"got"`
	Ticks   int    `json:"ticks"`
	Body    string `json:"body"`
	QuietMs int64  `json:"quietMs"`
}

// quiet is QuietMs as a duration.
func (r nodeReport) quiet() time.Duration { return time.Duration(r.QuietMs) * time.Millisecond }

// msArg is d in milliseconds, as the harnesses take their times.
func msArg(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// runNode runs script in node with args and decodes the report it
// prints last. The harnesses bound their own waits; the context is the
// backstop should node itself hang.
func runNode(t *testing.T, script string, args ...string) nodeReport {
	t.Helper()
	node := testkit.NeedBin(t, "node")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, append([]string{"-e", script, "--"}, args...)...).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var r nodeReport
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil || jerr != nil {
		t.Fatalf("node: %v, %v: %s", err, jerr, out)
	}
	t.Logf("node: %s", lines[len(lines)-1])
	return r
}

// duplexHarness runs a Node http server that answers a POST at once
// with 200 and, in "duplex" mode, a line every 200 ms while it reads the
// body; once the body has ended it ends the answer with "got N bytes".
// A Node http client sends a chunked POST to it through the proxy
// (absolute-form) and, once the answer's head is in, writes a 1000-byte
// piece and `pauses` more, each after `pauseMs` of silence on its side,
// then ends the body ("silent" mode: one piece, then nothing). It reports
// the answer's body, the lines that came down while the body was still
// open, and the silence before the end; it gives up after limitMs.
const duplexHarness = `
const http = require('http');
const [proxyHost, proxyPort, mode, pauseMs, pauses, limitMs] = process.argv.slice(1);
const piece = 'x'.repeat(1000);
const server = http.createServer((req, res) => {
  res.writeHead(200, {'Content-Type': 'text/plain'});
  res.flushHeaders();
  let received = 0, n = 0;
  const tick = mode === 'duplex' ? setInterval(() => res.write('tick ' + n++ + '\n'), 200) : null;
  res.on('close', () => clearInterval(tick));
  req.on('data', (d) => { received += d.length; });
  req.on('end', () => { clearInterval(tick); res.end('got ' + received + ' bytes\n'); });
  req.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => {
  const origin = '127.0.0.1:' + server.address().port;
  let sent = 0, body = '', ticks = -1, last = Date.now(), done = false;
  const report = (how) => {
    if (done) return;
    done = true;
    console.log(JSON.stringify({how, sent, ticks, body, quietMs: Date.now() - last}));
    process.exit(0);
  };
  setTimeout(() => report('open'), +limitMs);
  const req = http.request({host: proxyHost, port: +proxyPort, method: 'POST', agent: false,
    path: 'http://' + origin + '/' + mode, headers: {Host: origin, 'Transfer-Encoding': 'chunked'}});
  const send = () => { req.write(piece); sent += piece.length; last = Date.now(); };
  req.on('error', (e) => report('error: ' + e.message));
  req.on('socket', (s) => s.on('close', () => report('closed')));
  req.on('response', (res) => {
    res.on('data', (d) => { body += d; last = Date.now(); });
    res.on('end', () => report('end'));
    let left = mode === 'duplex' ? +pauses : 0;
    const next = () => {
      send();
      if (left-- > 0) { setTimeout(next, +pauseMs); return; }
      if (mode === 'duplex') { ticks = (body.match(/tick/g) || []).length; req.end(); }
    };
    next();
  });
  req.flushHeaders();
});
`

// TestNodeFullDuplex: a chunked POST whose origin answers at once and
// streams its answer while the body still comes (full-duplex HTTP/1.1,
// as streaming APIs do), through ferry's plain HTTP proxy. The body
// pauses for longer than idle_timeout while the answer streams down: the
// answer's bytes are bytes moving, so the body is not cut and reaches
// the origin whole. With neither side sending, the exchange ends after
// idle_timeout, not before and not much after.
func TestNodeFullDuplex(t *testing.T) {
	t.Parallel()
	const idle = time.Second
	f := startFerry(t, withJSON(fmt.Sprintf("idle_timeout = %q", idle)), nil)
	host, port, _ := strings.Cut(f.addr, ":")
	const pauses = 3
	pause := idle * 3 / 2

	t.Run("body pauses, answer streams", func(t *testing.T) {
		t.Parallel()
		r := runNode(t, duplexHarness, host, port, "duplex", msArg(pause), strconv.Itoa(pauses), msArg(20*time.Second))
		if want := fmt.Sprintf("got %d bytes\n", r.Sent); r.How != "end" || !strings.HasSuffix(r.Body, want) {
			t.Fatalf("answer ended %q after %d bytes sent, body %q; want it to end with %q", r.How, r.Sent, r.Body, want)
		}
		// The answer streamed while the body paused: without that the
		// pauses were silence and this test shows nothing.
		if min := pauses * int(pause/(200*time.Millisecond)) / 2; r.Ticks < min {
			t.Fatalf("%d lines came down while the body was open, want at least %d", r.Ticks, min)
		}
	})

	t.Run("both sides silent", func(t *testing.T) {
		t.Parallel()
		// node's clock starts at the client's last piece, before ferry
		// reads it: a ferry that waits idle_timeout never shows less.
		r := runNode(t, duplexHarness, host, port, "silent", "0", "0", msArg(5*idle))
		if r.How != "closed" || r.quiet() < idle || r.quiet() >= 4*idle {
			t.Fatalf("silent exchange: %q after %v of silence, want closed after %v to %v", r.How, r.quiet(), idle, 4*idle)
		}
		// ferry's timer ended it (the origin's answer timed out first, or
		// the client's body), not a side.
		l := f.waitLine(t, "access", func(l logLine) bool { return strings.HasSuffix(l.str("url"), "/silent") })
		if e := l.str("error"); !strings.Contains(e, "timed out") && !strings.Contains(e, "timeout") {
			t.Fatalf("access line %v: want a timeout as the error", l)
		}
	})
}

// mitmUpgradeHarness runs a Node https server (certFile, keyFile) whose
// 'upgrade' handler answers 101 and then speaks the protocol the client
// named: "echo" echoes; "count" only listens and, on "end", answers with
// the number of lines it got; "tick" only talks, a line every `every` ms
// for `total` ms, then "done N"; "silent" does nothing. A Node client
// sends CONNECT to the proxy, runs TLS over the tunnel with the proxy's
// CA (caFile) for name.test, and asks for the upgrade with Node's http
// client over that socket. It reports "ok" with what was sent and got, or
// "closed" with the time since the upgrade request was sent, or "open"
// if nothing ended it within limitMs.
const mitmUpgradeHarness = `
const fs = require('fs'), http = require('http'), https = require('https'), tls = require('tls');
const [proxyHost, proxyPort, caFile, certFile, keyFile, mode, every, total, limitMs] = process.argv.slice(1);
const lines = (sock, each) => {
  let buf = '';
  sock.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) each(buf.slice(0, i));
  });
};
const server = https.createServer({cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile)}, (req, res) => { res.writeHead(404); res.end(); });
server.on('upgrade', (req, sock) => {
  const proto = req.headers.upgrade;
  sock.on('error', () => {});
  sock.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ' + proto + '\r\n\r\n');
  if (proto === 'echo') sock.pipe(sock);
  let n = 0;
  if (proto === 'count') lines(sock, (l) => { if (l === 'end') sock.write(n + '\n'); else n++; });
  if (proto !== 'tick') return;
  const start = Date.now();
  const tick = setInterval(() => {
    if (Date.now() - start < +total) { sock.write('tick ' + n++ + '\n'); return; }
    clearInterval(tick);
    sock.write('done ' + n + '\n');
  }, +every);
  sock.on('close', () => clearInterval(tick));
});
server.listen(0, '127.0.0.1', () => {
  const origin = '127.0.0.1:' + server.address().port;
  let sent = 0, got = 0, asked = Date.now(), done = false;
  const report = (how) => {
    if (done) return;
    done = true;
    console.log(JSON.stringify({how, sent, got, quietMs: Date.now() - asked}));
    process.exit(0);
  };
  setTimeout(() => report('open'), +limitMs);
  const connect = http.request({host: proxyHost, port: +proxyPort, method: 'CONNECT', path: origin, agent: false});
  connect.on('error', (e) => report('CONNECT: ' + e.message));
  connect.on('connect', (res, raw) => {
    if (res.statusCode !== 200) return report('CONNECT: ' + res.statusCode);
    const sock = tls.connect({socket: raw, servername: 'name.test', ca: fs.readFileSync(caFile)});
    sock.on('error', (e) => report('TLS: ' + e.message));
    sock.on('secureConnect', () => {
      const req = http.request({createConnection: () => sock, path: '/ws/' + mode,
        headers: {Host: 'name.test', Connection: 'Upgrade', Upgrade: mode}});
      req.on('response', (r) => report('no upgrade: ' + r.statusCode));
      req.on('error', (e) => report('upgrade: ' + e.message));
      req.on('upgrade', (r, s) => talk(s, report, (n) => { sent = n; }, (n) => { got = n; }));
      req.end();
      asked = Date.now();
    });
  });
  connect.end();
});
// talk speaks mode on the upgraded socket s.
function talk(s, report, setSent, setGot) {
  s.on('close', () => report('closed'));
  s.on('error', () => {});
  if (mode === 'tick') {
    let n = 0;
    lines(s, (l) => { if (l === 'tick ' + n) setGot(++n); else { setSent(+l.slice(5)); report(l.startsWith('done ') ? 'ok' : 'bad line ' + l); } });
    return;
  }
  if (mode === 'silent') return;
  let n = 0, echoed = 0;
  lines(s, (l) => {
    if (mode === 'count') { setGot(+l); report('ok'); return; }
    if (l !== 'message ' + echoed) return report('echo ' + JSON.stringify(l) + ', want message ' + echoed);
    setGot(++echoed);
  });
  const start = Date.now();
  const send = setInterval(() => {
    if (Date.now() - start < +total) { s.write('message ' + n++ + '\n'); setSent(n); return; }
    clearInterval(send);
    if (mode === 'count') s.write('end\n');
    else setTimeout(() => report('ok'), 200);
  }, +every);
}
`

// mitmIdleFerry runs ferry with idle_timeout idle and the mitm plugin
// intercepting name.test (a CA made by `ferry ca init`), trusting
// targetCA for targets. It returns ferry and its CA's certificate.
func mitmIdleFerry(t *testing.T, dir, targetCA string, idle time.Duration) (*proc, string) {
	t.Helper()
	caCert, caKey := initFerryCA(t, dir)
	f := startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[log]
format = "json"

[defaults]
idle_timeout = %q

[[listener]]
name = "e2e"
listen = %q
plugins = ["mitm", "log"]

[[plugin]]
name = "mitm"
ca_cert = %q
ca_key = %q
intercept = ["name.test"]
upstream_ca_file = %q

[[plugin]]
name = "log"
`, idle, addr, caCert, caKey, targetCA)
	}, nil)
	return f, caCert
}

// TestNodeMitmUpgradeIdle: an HTTP/1.1 upgrade (101, then bytes, as
// WebSocket over wss://) inside a tunnel the mitm plugin intercepts is
// timed by idle_timeout as a tunnel is. Bytes one way only, either way,
// or both keep it open for four times idle_timeout, every byte through;
// with none either way after the 101, ferry closes it after
// idle_timeout, where it once held it until a side closed.
func TestNodeMitmUpgradeIdle(t *testing.T) {
	t.Parallel()
	const idle = time.Second
	dir := t.TempDir()
	targetCA, certFile, keyFile := testkit.WritePKI(t, dir, "name.test")
	f, ferryCA := mitmIdleFerry(t, dir, targetCA, idle)
	host, port, _ := strings.Cut(f.addr, ":")
	tests := []struct {
		name, mode string
	}{
		{"client talks, origin listens", "count"},
		{"origin talks, client listens", "tick"},
		{"echo both ways", "echo"},
		{"silent after the 101", "silent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runNode(t, mitmUpgradeHarness, host, port, ferryCA, certFile, keyFile, tt.mode,
				msArg(idle/3), msArg(4*idle), msArg(5*idle+2*time.Second))
			if tt.mode != "silent" {
				// A line every idle/3 for 4*idle: about 12 of them. The
				// origin ("tick") tells its count only at the end.
				if r.How != "ok" || r.Got != r.Sent || r.Sent < 8 {
					t.Fatalf("%s: ended %q after %v with %d lines through, sender's count %d; want ok, every line, at least 8",
						tt.mode, r.How, r.quiet(), r.Got, r.Sent)
				}
				return
			}
			// node's clock starts at the upgrade request, before the 101
			// renews ferry's watch: a ferry that waits idle_timeout never
			// shows less.
			if r.How != "closed" || r.quiet() < idle || r.quiet() >= 4*idle {
				t.Fatalf("silent upgrade: %q after %v, want closed by ferry after %v to %v", r.How, r.quiet(), idle, 4*idle)
			}
			f.waitLine(t, "access", func(l logLine) bool {
				return strings.HasSuffix(l.str("url"), "/silent") && l.str("reason") == "idle timeout"
			})
			// The upgrade owned the tunnel's connection: the tunnel's own
			// line (no url) blames the same watch, not the client.
			f.waitLine(t, "access", func(l logLine) bool { return l.str("url") == "" && l.str("reason") == "idle timeout" })
		})
	}
}
