package server

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"ferry/test/testkit"
)

// TestPluginChoosesUpstream: an upstream a plugin sets in OnConnect wins
// over the routes (here a catch-all reject); one the config does not have
// fails the request with 502.
func TestPluginChoosesUpstream(t *testing.T) {
	echo := testkit.EchoServer(t)
	parent := start(t, basicConfig)
	pick := &testPlugin{name: "pick", upstream: "parent"}
	bad := &testPlugin{name: "bad", upstream: "nope"}
	f := start(t, fmt.Sprintf(`
[defaults]
dial_timeout = "2s"
[[listener]]
name = "pick"
listen = "127.0.0.1:0"
plugins = ["pick", "log"]
[[listener]]
name = "bad"
listen = "127.0.0.1:0"
plugins = ["bad", "log"]
[[plugin]]
name = "pick"
type = "servertest"
[[plugin]]
name = "bad"
type = "servertest"
[[plugin]]
name = "log"
[[upstream]]
name = "parent"
url = "socks5://%s"
[[route]]
reject = true
`, parent.addr), pick, bad)
	pickAddr, badAddr := f.srv.Addrs()[0].String(), f.srv.Addrs()[1].String()

	host, port := splitPort(t, echo)
	c := dial(t, pickAddr)
	c.Write(socks5Request(host, port, 1))
	if got := readSOCKS5Reply(t, c); got != 0 {
		t.Fatalf("through the plugin's upstream: REP %#x", got)
	}
	testkit.EchoCheck(t, c)
	if n := parent.srv.Stats().Accepted; n != 1 {
		t.Errorf("parent accepted %d connections, want 1", n)
	}
	c.Close()
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"chain":"parent"`) })

	c = dial(t, badAddr)
	io.WriteString(c, "CONNECT "+echo+" HTTP/1.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 502 {
		t.Fatalf("unknown upstream: got %v %v, want 502", resp, err)
	}
}
