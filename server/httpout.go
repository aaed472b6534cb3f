package server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"ferry/server/httphead"
)

// requestOut is one request head to forward and what decides it.
type requestOut struct {
	hd  *httphead.Head
	req *http.Request
	// origURL is the view's URL before the plugins ran, to tell their
	// edits from what the client sent.
	origURL url.URL
	fr      httphead.Framing
	upgrade bool
	// reframe: the body goes with Content-Length: length instead of
	// the client's framing (the body hooks changed it), or chunked for
	// length -1 (a streamer changed it).
	reframe bool
	length  int
}

// keep reports the fields forwarded from the head as they came (or as
// the plugins edited them): not hop-by-hop, not Host (rebuilt from the
// request-target), not a Content-Length that Transfer-Encoding overrides
// (RFC 9112 section 6.3 item 3).
func (o *requestOut) keep(sc *fieldScratch) []bool {
	keep := scratch(&sc.keep, o.hd.Len())
	for i := range keep {
		name := o.hd.Name(i)
		switch {
		case strings.EqualFold(name, "Host"):
		case o.upgrade && strings.EqualFold(name, "Upgrade"):
			keep[i] = true
		case hopByHop(o.hd, name, true):
		case o.fr.HasTE && strings.EqualFold(name, "Content-Length"):
		case o.reframe && httphead.IsFramingField(name):
		default:
			keep[i] = true
		}
	}
	return keep
}

// append writes the head: the client's method and request-target in
// origin-form and its field lines byte for byte, except what the plugins
// changed and what a proxy must change, in HTTP/1.1 (RFC 9110 section
// 6.2: an intermediary sends its own version). The framing fields are
// ferry's, whatever the plugins did to the view: the client's, or a
// Content-Length for a reframed body.
func (o *requestOut) append(dst []byte) []byte {
	hd, req := o.hd, o.req
	target := originForm(hd.Target())
	if *req.URL != o.origURL {
		target = req.URL.RequestURI()
	}
	dst = append(dst, req.Method...)
	dst = append(append(dst, ' '), target...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	var sc fieldScratch
	keep := o.keep(&sc)
	unchanged, keys, added := viewEdits(hd, keep, req.Header, &sc)
	host := false
	for i := range hd.Len() {
		name := hd.Name(i)
		switch {
		case strings.EqualFold(name, "Host"):
			if !host {
				dst = appendHost(dst, hd, i, req.Host)
			}
			host = true
		case !keep[i]:
		case strings.EqualFold(name, "Transfer-Encoding"):
			if firstKey(keys, i) {
				dst = appendCodings(dst, hd, i)
			}
		case unchanged[i], strings.EqualFold(name, "Content-Length"):
			dst = hd.AppendField(dst, i)
		case firstKey(keys, i):
			for _, v := range req.Header[keys[i]] {
				if !invalidValue(v) {
					dst = appendField(dst, name, v)
				}
			}
		}
	}
	if !host {
		dst = appendField(dst, "Host", req.Host)
	}
	dst = appendAdded(dst, added, req.Header)
	switch {
	case !o.reframe:
	case o.length >= 0:
		dst = appendField(dst, "Content-Length", strconv.Itoa(o.length))
	default:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	if o.upgrade {
		dst = append(dst, "Connection: Upgrade\r\n"...)
	}
	return append(dst, '\r', '\n')
}

// appendHost writes the Host line: as received when it names the
// request-target's authority, else replaced by it (RFC 9112 section
// 3.2.2).
func appendHost(dst []byte, hd *httphead.Head, i int, host string) []byte {
	if hd.Value(i) == host {
		return hd.AppendField(dst, i)
	}
	return appendField(dst, hd.Name(i), host)
}

// appendCodings writes the one Transfer-Encoding line for the message's
// codings (RFC 9110 section 7.6.1 lets a proxy rewrite it): field i as it
// came when it already says them all and nothing more.
func appendCodings(dst []byte, hd *httphead.Head, i int) []byte {
	if c := httphead.Codings(hd); c != hd.Value(i) {
		return appendField(dst, hd.Name(i), c)
	}
	return hd.AppendField(dst, i)
}

// appendAdded writes the fields the plugins added, but not framing
// fields, which are ferry's, nor names and values that are not valid
// field syntax, which would split the head.
func appendAdded(dst []byte, added []string, hdr http.Header) []byte {
	for _, k := range added {
		if httphead.IsFramingField(k) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range hdr[k] {
			if !invalidValue(v) {
				dst = appendField(dst, k, v)
			}
		}
	}
	return dst
}

func firstKey(keys []string, i int) bool {
	for _, k := range keys[:i] {
		if k == keys[i] {
			return false
		}
	}
	return true
}

func appendField(dst []byte, name, value string) []byte {
	dst = append(append(dst, name...), ": "...)
	return append(append(dst, value...), '\r', '\n')
}

// originForm turns an absolute-form request-target into the origin-form
// an origin expects (RFC 9112 section 3.2.1), keeping the client's bytes.
func originForm(t string) string {
	_, rest, ok := strings.Cut(t, "://")
	if !ok {
		return t
	}
	i := strings.IndexAny(rest, "/?")
	switch {
	case i < 0:
		return "/"
	case rest[i] == '?':
		return "/" + rest[i:]
	}
	return rest[i:]
}

// responseOut is one response head to pass to the client.
type responseOut struct {
	hd *httphead.Head
	fr httphead.Framing
	// hdr is the view the OnHTTPResponse and OnHTTPBody hooks edited
	// (see responseView), nil when no plugin has the hooks: then the
	// head's fields are passed on without building one. view is the
	// whole view.
	hdr  http.Header
	view *http.Response
	// reframe: the body goes with Content-Length: length instead of
	// the origin's framing (the body hooks changed it); with length -1,
	// chunked (a streamer changed it), or close-delimited to an HTTP/1.0
	// client.
	reframe bool
	length  int
	// dechunk: the body goes to an HTTP/1.0 client without chunk framing.
	dechunk bool
	// client10: the client speaks HTTP/1.0, which has no
	// Transfer-Encoding.
	client10 bool
	// interim: a 1xx response, which has no framing fields (RFC 9110
	// section 8.6): what an origin put there is not passed on.
	interim bool
	upgrade bool
	// conn is the Connection field ferry adds: "close", "keep-alive" for
	// an HTTP/1.0 client kept alive, or empty.
	conn string
}

// kept reports whether field i goes to the client: not hop-by-hop, not
// a framing field ferry drops or rewrites for this client.
func (o *responseOut) kept(i int) bool {
	name := o.hd.Name(i)
	switch {
	case o.upgrade && strings.EqualFold(name, "Upgrade"):
		return true
	case hopByHop(o.hd, name, false),
		o.fr.HasTE && strings.EqualFold(name, "Content-Length"),
		(o.dechunk || o.client10) && strings.EqualFold(name, "Transfer-Encoding"),
		(o.interim || o.reframe) && httphead.IsFramingField(name):
		return false
	}
	return true
}

// keep is kept for every field.
func (o *responseOut) keep(sc *fieldScratch) []bool {
	keep := scratch(&sc.keep, o.hd.Len())
	for i := range keep {
		keep[i] = o.kept(i)
	}
	return keep
}

// append writes the response head: ferry's HTTP/1.1 status line with the
// origin's code and reason, then its field lines byte for byte minus the
// hop-by-hop ones and the framing fields ferry changes; fields the hooks
// changed are written as they left them where they were, new ones last.
func (o *responseOut) append(dst []byte) []byte {
	hd := o.hd
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(hd.Status), 10)
	dst = append(append(dst, ' '), hd.Reason()...)
	dst = append(dst, '\r', '\n')
	var unchanged []bool
	var keys, added []string
	var sc fieldScratch
	if o.hdr != nil {
		unchanged, keys, added = viewEdits(hd, o.keep(&sc), o.hdr, &sc)
	}
	te := false
	for i := range hd.Len() {
		switch {
		case !o.kept(i):
		case strings.EqualFold(hd.Name(i), "Transfer-Encoding"):
			if !te {
				dst = appendCodings(dst, hd, i)
			}
			te = true
		case o.hdr == nil || unchanged[i]:
			dst = hd.AppendField(dst, i)
		case firstKey(keys, i):
			for _, v := range o.hdr[keys[i]] {
				dst = appendField(dst, hd.Name(i), v)
			}
		}
	}
	dst = appendAdded(dst, added, o.hdr)
	switch {
	case !o.reframe:
	case o.length >= 0:
		dst = appendField(dst, "Content-Length", strconv.Itoa(o.length))
	case !o.client10:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	switch {
	case o.upgrade:
		dst = append(dst, "Connection: Upgrade\r\n"...)
	case o.conn != "":
		dst = appendField(dst, "Connection", o.conn)
	}
	return append(dst, '\r', '\n')
}
