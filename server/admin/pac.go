package admin

import (
	"net"
	"net/http"
	"net/netip"

	"ferry/server"
)

// openPath reports the paths served without the token and to any Host:
// /healthz, which says nothing, and the PAC file, which browsers fetch
// without credentials by whatever name reaches the service and which
// holds nothing the proxy listeners do not also serve.
func openPath(path string) bool {
	return path == "/healthz" || path == server.PACPath
}

// pac serves the PAC file of the listener named by ?listener=, or of the
// first listener with a pac table: 404 when there is none.
func (a *Admin) pac(w http.ResponseWriter, r *http.Request) {
	var local netip.Addr
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		local = la.AddrPort().Addr().Unmap()
	}
	body, err := a.srv.PAC(r.URL.Query().Get("listener"), r.Host, local)
	if err != nil {
		http.Error(w, "no listener serves a PAC file: add a pac table to a [[listener]]", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", server.PACContentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(body)
}
