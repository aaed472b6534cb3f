package mitm

import (
	"crypto/tls"
	"net"
	"strconv"
	"testing"
)

// BenchmarkLeafGenerate makes a new leaf each op (a host not seen
// before): one ECDSA P-256 signature, its check and a parse.
func BenchmarkLeafGenerate(b *testing.B) {
	ca := newTestCA(b, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := ca.Leaf("h" + strconv.Itoa(i) + ".example.test"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
	if _, misses := ca.Stats(); misses != uint64(b.N) {
		b.Fatalf("%d misses, want %d", misses, b.N)
	}
}

// BenchmarkLeafCached returns a cached leaf each op.
func BenchmarkLeafCached(b *testing.B) {
	ca := newTestCA(b, 0)
	if _, err := ca.Leaf("www.example.test"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.Leaf("www.example.test"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}

// BenchmarkHandshakeWarm runs a full TLS 1.3 handshake (no resumption)
// over net.Pipe each op, client and server both, with the server's leaf
// already cached: the cost an intercepted connection pays on ferry's
// side once the host has been seen, plus the client's share.
func BenchmarkHandshakeWarm(b *testing.B) {
	ca := newTestCA(b, 0)
	const host = "www.example.test"
	if _, err := ca.Leaf(host); err != nil {
		b.Fatal(err)
	}
	serverCfg := &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return ca.Leaf(hello.ServerName)
		},
		MinVersion: tls.VersionTLS13,
		// No tickets: they would sit unread in the synchronous pipe
		// after the client's handshake, and no op resumes anyway.
		SessionTicketsDisabled: true,
	}
	clientCfg := &tls.Config{RootCAs: pool(ca), ServerName: host, MinVersion: tls.VersionTLS13}
	b.ReportAllocs()
	for b.Loop() {
		cc, sc := net.Pipe()
		server, client := tls.Server(sc, serverCfg), tls.Client(cc, clientCfg)
		done := make(chan error, 1)
		go func() { done <- server.Handshake() }()
		err := client.Handshake()
		if err != nil {
			sc.Close()
		}
		if sErr := <-done; err == nil {
			err = sErr
		}
		cc.Close()
		sc.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	if _, misses := ca.Stats(); misses != 1 {
		b.Fatalf("%d leaves made, want 1", misses)
	}
}
