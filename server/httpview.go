package server

import (
	"errors"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"sort"
	"strings"

	"ferry/server/httphead"
)

// requestView builds the *http.Request that plugins see and may edit
// from a request head: fields under canonical keys, Host apart as
// net/http keeps it, no body. The head itself stays the source of what
// is forwarded; the view's edits are applied to it (see appendRequest).
func requestView(hd *httphead.Head, fr httphead.Framing) (*http.Request, error) {
	target := hd.Target()
	req := &http.Request{
		Method: hd.Method(), RequestURI: target,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, hd.Len()),
	}
	if !hd.AtLeast11() {
		req.Proto, req.ProtoMinor = "HTTP/1.0", 0
	}
	hosts := 0
	// One backing array for every field's value, as net/textproto does:
	// a slice per field was most of a small request's allocations. Each
	// field's slice is capped at its one value, so a repeated field's
	// append copies rather than overwriting its neighbour.
	vals := make([]string, hd.Len())
	for i := range hd.Len() {
		k := textproto.CanonicalMIMEHeaderKey(hd.Name(i))
		if k == "Host" {
			hosts++
			req.Host = hd.Value(i)
			continue
		}
		if prev, ok := req.Header[k]; ok {
			req.Header[k] = append(prev, hd.Value(i))
			continue
		}
		vals[i] = hd.Value(i)
		req.Header[k] = vals[i : i+1 : i+1]
	}
	if hosts > 1 {
		return nil, errors.New("more than one Host field") // RFC 9112 section 3.2
	}
	if req.Method == http.MethodConnect {
		req.URL = &url.URL{Host: target}
		return req, nil
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, errors.New("invalid request-target")
	}
	req.URL = u
	if u.Host != "" {
		req.Host = u.Host // RFC 9112 section 3.2.2: absolute-form wins
	}
	req.Close = !keepAlive(hd)
	switch fr.Kind {
	case httphead.Length:
		req.ContentLength = fr.Length
	case httphead.Chunked:
		// Transfer-Encoding overrides Content-Length, which is not
		// forwarded (RFC 9112 section 6.3 item 3).
		delete(req.Header, "Content-Length")
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
	}
	return req, nil
}

// keepAlive reports whether a message's sender wants its connection kept
// (RFC 9112 section 9.3): HTTP/1.1 unless "close", HTTP/1.0 only with
// "keep-alive".
func keepAlive(hd *httphead.Head) bool {
	if hd.AtLeast11() {
		return !hasConnToken(hd, "close")
	}
	return hasConnToken(hd, "keep-alive")
}

// hasConnToken reports whether a Connection field lists token.
func hasConnToken(hd *httphead.Head, token string) bool {
	for i := range hd.Len() {
		if isField(hd.Name(i), "Connection") && listHas(hd.Value(i), token) {
			return true
		}
	}
	return false
}

// isField compares a field name with a known one. Names are tokens
// (ASCII; httphead checks them), so names of other lengths differ, and
// most fields are told apart by length alone: hopByHop runs this for
// every field of every head against every Connection field.
func isField(name, known string) bool {
	return len(name) == len(known) && strings.EqualFold(name, known)
}

func listHas(list, token string) bool {
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ",")
		if strings.EqualFold(strings.TrimSpace(item), token) {
			return true
		}
	}
	return false
}

// hopByHop reports fields a proxy does not forward (RFC 9110 section
// 7.6.1): Connection and the fields it names, the connection-specific
// fields, and in requests every Proxy-* field (addressed to ferry, its
// credentials first of all). Responses keep Proxy-Status (RFC 9209),
// which is meant for the client.
func hopByHop(hd *httphead.Head, name string, request bool) bool {
	switch {
	case isField(name, "Connection"), isField(name, "Keep-Alive"),
		isField(name, "TE"), isField(name, "Upgrade"),
		isField(name, "Proxy-Connection"), isField(name, "Proxy-Authenticate"):
		return true
	case request && len(name) > 6 && strings.EqualFold(name[:6], "Proxy-"):
		return true
	}
	return hasConnToken(hd, name)
}

// stripHopByHop removes from a view what hopByHop drops from the head,
// so plugins see what will be forwarded; an upgrade keeps Upgrade.
func stripHopByHop(hd *httphead.Head, hdr http.Header, upgrade bool) {
	for k := range hdr {
		if upgrade && k == "Upgrade" {
			continue
		}
		if hopByHop(hd, k, true) {
			delete(hdr, k)
		}
	}
}

// viewEdits compares a view after the plugins ran with the head it came
// from: unchanged[i] is true for field i when its key's values are as
// received; added lists keys the plugins introduced, sorted.
// keys[i] is field i's canonical key, empty for fields not kept.
func viewEdits(hd *httphead.Head, keep []bool, hdr http.Header, sc *fieldScratch) (unchanged []bool, keys, added []string) {
	keys = scratch(&sc.keys, hd.Len())
	unchanged = scratch(&sc.unchanged, hd.Len())
	for i := range keys {
		if keep[i] {
			keys[i] = textproto.CanonicalMIMEHeaderKey(hd.Name(i))
		}
	}
	for i, k := range keys {
		if k == "" || !firstKey(keys, i) {
			continue
		}
		vals, same, j := hdr[k], true, 0
		for m := i; m < len(keys); m++ {
			if keys[m] != k {
				continue
			}
			if j >= len(vals) || vals[j] != hd.Value(m) {
				same = false
			}
			j++
		}
		same = same && j == len(vals)
		for m := i; m < len(keys); m++ {
			if keys[m] == k {
				unchanged[m] = same
			}
		}
	}
	for k := range hdr {
		if !slices.Contains(keys, k) {
			added = append(added, k)
		}
	}
	sort.Strings(added)
	return unchanged, keys, added
}

// fieldScratch backs the per-field slices of a head's rewrite (keep,
// viewEdits) on the caller's stack for heads of up to 32 fields, most
// of them: three allocations a request fewer. A zero fieldScratch is
// ready; each array serves one slice.
type fieldScratch struct {
	keep, unchanged [32]bool
	keys            [32]string
}

// scratch returns n zero values, in arr (one of a fieldScratch's) when
// they fit, else on the heap.
func scratch[T any](arr *[32]T, n int) []T {
	if n <= len(arr) {
		return arr[:n:n]
	}
	return make([]T, n)
}
