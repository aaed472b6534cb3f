//go:build linux

package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// TestMITMRefusesWildcardServerName: a client that sends *.wild.test as
// its server name through a mitm that intercepts every name (and, to rule
// out the target's certificate stopping it, accepts any) gets a TLS
// unrecognized_name alert and no leaf; ferry logs the refusal. Before,
// it got a leaf whose SAN was *.wild.test.
func TestMITMRefusesWildcardServerName(t *testing.T) {
	dir := t.TempDir()
	target, _ := mitmTarget(t, dir)
	caCert, caKey := initFerryCA(t, dir)
	f := startFerry(t, chainConfig([]string{"mitm", "log"}, fmt.Sprintf(`[[plugin]]
name = "mitm"
ca_cert = %q
ca_key = %q
intercept = ["*"]
insecure_upstream = true

[[plugin]]
name = "log"
`, caCert, caKey)), nil)

	handshake := func(serverName string) (*tls.ConnectionState, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := testkit.DialCONNECT(ctx, f.addr, target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		tc := tls.Client(c, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		st := tc.ConnectionState()
		return &st, nil
	}

	st, err := handshake("*.wild.test")
	if err == nil {
		t.Fatalf("handshake for *.wild.test succeeded with a leaf for %q, want an alert", st.PeerCertificates[0].DNSNames)
	}
	if !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("handshake for *.wild.test: got %v, want the unrecognized name alert", err)
	}
	l := f.waitLine(t, "mitm: ClientHello refused; tunnel closed", nil)
	if l.str("sni") != "*.wild.test" || l.str("level") != "warn" {
		t.Fatalf("refusal line %v: want level warn, sni *.wild.test", l)
	}

	// A host name still gets its leaf.
	st, err = handshake("name.test")
	if err != nil {
		t.Fatalf("handshake for name.test: %v", err)
	}
	if got := st.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "name.test" {
		t.Fatalf("leaf for name.test has SANs %q", got)
	}
}
