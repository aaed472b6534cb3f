//go:build linux

package test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// upgradeHarness runs a Node http server that takes upgrades and echoes
// what follows, and a Node http client that asks for an upgrade through
// the proxy (absolute-form, as for a plain ws:// URL), then sends a
// message every `every` ms for `total` ms and checks each echo. It
// prints "ok N" after N echoes, or the error.
const upgradeHarness = `
const http = require('http');
const [proxyHost, proxyPort, every, total] = process.argv.slice(1);
const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
server.on('upgrade', (req, sock, head) => {
  sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
  if (head.length) sock.write(head);
  sock.pipe(sock);
});
server.listen(0, '127.0.0.1', () => {
  const origin = '127.0.0.1:' + server.address().port;
  const req = http.request({host: proxyHost, port: +proxyPort, path: 'http://' + origin + '/ws',
    headers: {Host: origin, Connection: 'Upgrade', Upgrade: 'echo'}});
  req.on('response', (res) => { console.log('no upgrade: ' + res.statusCode); process.exit(1); });
  req.on('error', (e) => { console.log('request: ' + e.message); process.exit(1); });
  req.on('upgrade', (res, sock) => {
    let got = '', sent = 0, echoed = 0;
    const start = Date.now();
    sock.on('data', (d) => {
      got += d;
      while (got.includes('\n')) {
        const i = got.indexOf('\n');
        const line = got.slice(0, i); got = got.slice(i + 1);
        if (line !== 'message ' + echoed) { console.log('echo ' + JSON.stringify(line) + ', want message ' + echoed); process.exit(1); }
        echoed++;
      }
    });
    sock.on('close', () => { console.log('closed after ' + (Date.now() - start) + ' ms, ' + echoed + ' echoes'); process.exit(1); });
    const tick = setInterval(() => {
      if (Date.now() - start >= +total) {
        clearInterval(tick);
        setTimeout(() => { console.log('ok ' + echoed + '/' + sent); process.exit(0); }, 200);
        return;
      }
      sock.write('message ' + sent++ + '\n');
    }, +every);
  });
  req.end();
});
`

// TestNodeUpgrade: Node's http client upgrades a connection through
// ferry's plain HTTP proxy (absolute-form GET with Upgrade, which ferry
// passes on and then tunnels after the 101) and keeps it busy for three
// times idle_timeout: the tunnel must carry every message, however long
// it lasts, as long as it is not silent.
func TestNodeUpgrade(t *testing.T) {
	t.Parallel()
	node := testkit.NeedBin(t, "node")
	f := startFerry(t, withJSON(`idle_timeout = "1s"`), nil)
	host, port, _ := strings.Cut(f.addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "-e", upgradeHarness, "--", host, port, "250", "3000").CombinedOutput()
	got := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(got, "ok ") {
		t.Fatalf("node: %v: %s", err, got)
	}
	var echoed, sent int
	if _, err := fmt.Sscanf(got, "ok %d/%d", &echoed, &sent); err != nil || echoed != sent || sent < 10 {
		t.Fatalf("node: %q: want every message echoed, at least 10", got)
	}
}
