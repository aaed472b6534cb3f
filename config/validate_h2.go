package config

import "slices"

// MaxStreamsPerConnection bounds max_streams_per_connection.
const MaxStreamsPerConnection = 10000

// http2 checks a listener's HTTP/2 settings.
func (l *loader) http2(p string, ln Listener) {
	if ln.H2C && !slices.Contains(ln.Protocols, "http") {
		l.errorf(p+".h2c", `HTTP/2 is an HTTP proxy protocol: h2c needs "http" in protocols`)
	}
	if n := ln.MaxStreamsPerConnection; n != nil && (*n < 1 || *n > MaxStreamsPerConnection) {
		l.errorf(p+".max_streams_per_connection", "must be between 1 and %d, got %d", MaxStreamsPerConnection, *n)
	}
	if n := ln.MaxClientStreams; n != nil && *n < 0 {
		l.errorf(p+".max_client_streams", "must not be negative (0 means unlimited)")
	}
}
