package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"ferry/config"
)

// PAC serving: a listener with a pac table answers GET /proxy.pac, an
// origin-form request a browser sends to fetch its proxy auto-config
// (any other origin-form request is still answered 400), and the admin
// service serves the same file through Server.PAC.
//
// Every configured string reaches the file as a JSON string literal,
// which JavaScript reads as the same string (json.Marshal escapes
// quotes, backslashes, control characters, <, > and &, and U+2028 and
// U+2029), after config has held it to a narrow grammar.

// PACPath is the path a proxy listener answers with its PAC file.
const PACPath = "/proxy.pac"

// PACContentType is the PAC file's media type, the one browsers expect.
const PACContentType = "application/x-ns-proxy-autoconfig"

// isPACRequest reports whether req asks a proxy listener for its PAC
// file: GET or HEAD of /proxy.pac in origin-form.
func isPACRequest(req *http.Request) bool {
	return !req.URL.IsAbs() && req.URL.Path == PACPath &&
		(req.Method == http.MethodGet || req.Method == http.MethodHead)
}

// servePAC answers a PAC request and closes the connection: a browser
// fetches the file once, then sends its proxy requests on connections of
// their own.
func (h *conn) servePAC(req *http.Request) {
	local, _ := h.c.LocalAddr().(*net.TCPAddr)
	var ip netip.Addr
	if local != nil {
		ip = local.AddrPort().Addr().Unmap()
	}
	body := h.l.pacFile(req.Host, ip)
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
		PACContentType, len(body))
	if req.Method != http.MethodHead {
		b.Write(body)
	}
	h.linger = true // a GET may carry a body ferry does not read
	if _, err := h.c.Write(b.Bytes()); err != nil {
		h.debugHandshake("http", err)
		return
	}
	h.l.log.Debug().Str("client", h.client.String()).Msg("pac file served")
}

// pacFile generates the listener's PAC file. reqHost is the Host the
// file was asked for by and local the address that request reached:
// when the listener binds all interfaces, its derived proxy address uses
// the first if it is a valid host, else the second.
func (l *frontend) pacFile(reqHost string, local netip.Addr) []byte {
	return generatePAC(l.cfg.PAC, l.pacProxies(reqHost, local))
}

// pacProxies is the listener's proxy list: the configured one, or this
// listener derived from its address.
func (l *frontend) pacProxies(reqHost string, local netip.Addr) []string {
	if ps := l.cfg.PAC.Proxies; len(ps) > 0 {
		out := make([]string, 0, len(ps))
		for _, e := range ps {
			kind, addr, _ := config.ParsePACProxy(e) // checked by config
			out = append(out, kind+" "+addr)
		}
		return out
	}
	host, port, _ := net.SplitHostPort(l.cfg.Listen)
	if l.sock != nil {
		port = strconv.Itoa(l.sock.ln.Addr().(*net.TCPAddr).Port)
	}
	if a, err := netip.ParseAddr(host); host == "" || err == nil && a.IsUnspecified() {
		host = pacHostOf(reqHost)
		if host == "" && local.IsValid() {
			host = local.String()
		}
	}
	addr := net.JoinHostPort(host, port)
	// A TLS listener is only "HTTPS host:port": PROXY would have the
	// browser speak plaintext HTTP to a port that expects a ClientHello.
	// The browser checks the proxy's certificate against host, so the
	// certificate must name it (else configure proxies).
	if l.tls != nil {
		return []string{"HTTPS " + addr}
	}
	return []string{"PROXY " + addr}
}

// pacHostOf returns the host of a Host field when it is an IP address
// (without zone) or a host name, else "": a hostile Host must not reach
// the file.
func pacHostOf(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return ""
		}
		return a.String()
	}
	if !validHostName(host) || strings.HasPrefix(host, ".") || strings.Contains(host, "..") {
		return ""
	}
	return strings.ToLower(host)
}

// ErrNoPAC is Server.PAC's answer when no listener (or not the one
// named) has a pac table.
var ErrNoPAC = errors.New("no listener serves a PAC file")

// PAC returns the PAC file of the named listener, or of the first one
// with a pac table when name is empty, for the admin service. reqHost and
// local are as for a listener's own: the Host the file was asked for by
// and the address that request reached.
func (s *Server) PAC(name, reqHost string, local netip.Addr) ([]byte, error) {
	s.mu.Lock()
	var l *frontend
	for _, k := range s.sockets {
		f := k.current()
		if f.cfg.PAC != nil && (name == "" || f.cfg.Name == name) {
			l = f
			break
		}
	}
	s.mu.Unlock()
	if l == nil {
		return nil, ErrNoPAC
	}
	return l.pacFile(reqHost, local), nil
}

// jsString writes s as a JavaScript string literal.
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		return `""` // a string always marshals
	}
	return string(b)
}
