package config

import "slices"

// MaxStreamsPerConnection bounds max_streams_per_connection.
const MaxStreamsPerConnection = 10000

// http2 checks a listener's HTTP/2 settings.
func (l *loader) http2(p string, ln Listener) {
	http := slices.Contains(ln.Protocols, "http")
	switch {
	case ln.H2C && ln.TLS != nil:
		l.errorf(p+".h2c", "h2c is HTTP/2 over plain TCP; a TLS listener offers h2 in ALPN (http2, default true)")
	case ln.H2C && !http:
		l.errorf(p+".h2c", `HTTP/2 is an HTTP proxy protocol: h2c needs "http" in protocols`)
	}
	switch {
	case ln.HTTP2 == nil:
	case ln.TLS == nil:
		l.errorf(p+".http2", "http2 is the h2 offer of a TLS listener's ALPN: set tls, or h2c for HTTP/2 over plain TCP")
	case *ln.HTTP2 && !http:
		l.errorf(p+".http2", `HTTP/2 is an HTTP proxy protocol: http2 needs "http" in protocols`)
	}
	if n := ln.MaxStreamsPerConnection; n != nil && (*n < 1 || *n > MaxStreamsPerConnection) {
		l.errorf(p+".max_streams_per_connection", "must be between 1 and %d, got %d", MaxStreamsPerConnection, *n)
	}
	if n := ln.MaxClientStreams; n != nil && *n < 0 {
		l.errorf(p+".max_client_streams", "must not be negative (0 means unlimited)")
	}
}
