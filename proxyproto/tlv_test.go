package proxyproto

import (
	"bufio"
	"bytes"
	"net"
	"testing"
)

func TestTLVHelpers(t *testing.T) {
	ssl := SSLInfo{
		Client: ClientSSL | ClientCertConn,
		Verify: 0,
		TLVs: []TLV{
			{SubtypeSSLVersion, []byte("TLSv1.3")},
			{SubtypeSSLCN, []byte("client.example.com")},
			{SubtypeSSLCipher, []byte("ECDHE-RSA-AES128-GCM-SHA256")},
			{SubtypeSSLSigAlg, []byte("RSA-SHA256")},
			{SubtypeSSLKeyAlg, []byte("RSA2048")},
		},
	}
	in := v2(0x21, 0x11, ip4Block("1.2.3.4", "5.6.7.8", 1, 2),
		tlv(TypeNOOP, "pad"),
		tlv(TypeALPN, "h2"),
		tlv(TypeAuthority, "example.com"),
		tlv(TypeUniqueID, "\x00\x01id"),
		tlv(TypeSSL, "\x03\x00\x00\x00\x00"+
			string(tlv(SubtypeSSLVersion, "TLSv1.3"))+
			string(tlv(SubtypeSSLCN, "client.example.com"))+
			string(tlv(SubtypeSSLCipher, "ECDHE-RSA-AES128-GCM-SHA256"))+
			string(tlv(SubtypeSSLSigAlg, "RSA-SHA256"))+
			string(tlv(SubtypeSSLKeyAlg, "RSA2048"))),
		tlv(TypeNetNS, "blue"),
		tlv(TypeALPN, "second ALPN is ignored by ALPN()"),
	)
	h, err := Read(bufio.NewReader(bytes.NewReader(in)), ReadOptions{})
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	s, ok := h.SSL()
	if !ok {
		t.Fatal("SSL: got false, want true")
	}
	tests := []struct {
		name      string
		got, want string
	}{
		{name: "ALPN", got: string(h.ALPN()), want: "h2"},
		{name: "Authority", got: h.Authority(), want: "example.com"},
		{name: "UniqueID", got: string(h.UniqueID()), want: "\x00\x01id"},
		{name: "NetNS", got: h.NetNS(), want: "blue"},
		{name: "SSL client", got: string(s.Client), want: string(rune(ClientSSL | ClientCertConn))},
		{name: "SSL version", got: s.Version(), want: "TLSv1.3"},
		{name: "SSL CN", got: s.CN(), want: "client.example.com"},
		{name: "SSL cipher", got: s.Cipher(), want: "ECDHE-RSA-AES128-GCM-SHA256"},
		{name: "SSL sig alg", got: s.SigAlg(), want: "RSA-SHA256"},
		{name: "SSL key alg", got: s.KeyAlg(), want: "RSA2048"},
		{name: "SSL TLV encodes back", got: string(ssl.TLV().Value), want: string(func() []byte { v, _ := h.TLV(TypeSSL); return v }())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
	if s.Verify != 0 {
		t.Fatalf("SSL verify: got %d, want 0", s.Verify)
	}
}

func TestTLVHelpersAbsent(t *testing.T) {
	h := &Header{Version: 2, Command: Proxy, TLVs: []TLV{{0xe0, []byte("x")}}}
	if h.ALPN() != nil || h.Authority() != "" || h.UniqueID() != nil || h.NetNS() != "" {
		t.Fatalf("got %q %q %q %q, want all empty", h.ALPN(), h.Authority(), h.UniqueID(), h.NetNS())
	}
	if _, ok := h.SSL(); ok {
		t.Fatal("SSL: got true, want false")
	}
	if v, ok := h.TLV(0xe0); !ok || string(v) != "x" {
		t.Fatalf("TLV(0xe0): got %q, %v, want \"x\", true", v, ok)
	}
	h.TLVs = append(h.TLVs, TLV{TypeSSL, []byte{1, 2}})
	if _, ok := h.SSL(); ok {
		t.Fatal("malformed SSL: got true, want false")
	}
}

func TestSSLVerifyAndFlags(t *testing.T) {
	in := SSLInfo{Client: ClientSSL | ClientCertSess, Verify: 0x01020304}
	h := &Header{Version: 2, Command: Proxy, TLVs: []TLV{in.TLV()}}
	if got := h.TLVs[0].Value; !bytes.Equal(got, []byte{0x05, 1, 2, 3, 4}) {
		t.Fatalf("got value %x, want 0501020304", got)
	}
	out, ok := h.SSL()
	if !ok || out.Client != in.Client || out.Verify != in.Verify || len(out.TLVs) != 0 {
		t.Fatalf("got %+v, %v, want %+v", out, ok, in)
	}
}

func TestAddCRC32C(t *testing.T) {
	h := v2h(Stream, tcp("1.2.3.4", 1), tcp("5.6.7.8", 2))
	h.AddCRC32C()
	h.AddCRC32C()
	if len(h.TLVs) != 1 || h.TLVs[0].Type != TypeCRC32C {
		t.Fatalf("got TLVs %v, want one CRC32C", h.TLVs)
	}
	b, err := h.Format()
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	if want := withCRC(v2(0x21, 0x11, ip4Block("1.2.3.4", "5.6.7.8", 1, 2))); !bytes.Equal(b, want) {
		t.Fatalf("got %q, want %q", b, want)
	}
	// A changed field changes the checksum; Format keeps it right.
	h.Source.(*net.TCPAddr).Port = 9
	b, _ = h.Format()
	if _, err := Read(bufio.NewReader(bytes.NewReader(b)), ReadOptions{}); err != nil {
		t.Fatalf("after a change: got error %v, want none", err)
	}
}
