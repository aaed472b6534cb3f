package server

import (
	"net/http"
	"strconv"

	"ferry/plugins"
)

// writeAnswer sends an answer a plugin chose (plugins.HTTPAnswer) on a
// ResponseWriter: its fields, then its body with a Content-Length, or
// none for the answer to a HEAD request (RFC 9110 section 9.3.2).
func writeAnswer(w http.ResponseWriter, a *plugins.HTTPAnswer, head bool) {
	status := a.Status
	if status < 100 || status > 999 {
		status = http.StatusForbidden
	}
	hdr := w.Header()
	for k, vs := range a.Header {
		hdr[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	hdr.Del("Transfer-Encoding")
	hdr.Set("Content-Length", strconv.Itoa(len(a.Body)))
	w.WriteHeader(status)
	if !head {
		w.Write(a.Body)
	}
}
