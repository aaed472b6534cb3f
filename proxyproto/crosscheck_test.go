package proxyproto

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	pp "github.com/pires/go-proxyproto"
)

// Cross-checks against github.com/pires/go-proxyproto, an independent
// implementation: our writer feeds their parser and their writer feeds
// ours. The random headers leave out what that library handles
// differently on purpose: it rejects PROXY with AF_UNSPEC, reads a v1
// UNKNOWN as LOCAL, does not verify CRC32C (so it cannot fill one in
// either), and cuts UNIX names at the first NUL, which drops abstract names.
// It also returns NOOP TLVs without their padding, so NOOP values are not
// compared.

func toPires(t *testing.T, h *Header) *pp.Header {
	t.Helper()
	ph := &pp.Header{
		Version:           byte(h.Version),
		Command:           pp.ProtocolVersionAndCommand(0x20 | byte(h.Command)),
		TransportProtocol: pp.AddressFamilyAndProtocol(family(h.Source, h.Destination)),
		SourceAddr:        h.Source,
		DestinationAddr:   h.Destination,
	}
	var tlvs []pp.TLV
	for _, x := range h.TLVs {
		tlvs = append(tlvs, pp.TLV{Type: pp.PP2Type(x.Type), Value: x.Value})
	}
	if err := ph.SetTLVs(tlvs); err != nil {
		t.Fatalf("go-proxyproto SetTLVs: %v", err)
	}
	return ph
}

func fromPires(t *testing.T, ph *pp.Header) *Header {
	t.Helper()
	h := &Header{
		Version:     int(ph.Version),
		Command:     Command(ph.Command & 0x0f),
		Transport:   Transport(ph.TransportProtocol & 0x0f),
		Source:      ph.SourceAddr,
		Destination: ph.DestinationAddr,
	}
	tlvs, err := ph.TLVs()
	if err != nil {
		t.Fatalf("go-proxyproto TLVs: %v", err)
	}
	for _, x := range tlvs {
		h.TLVs = append(h.TLVs, TLV{Type: byte(x.Type), Value: x.Value})
	}
	return h
}

var crossOpts = randOpts{noUnspecProxy: true, noAbstract: true}

func TestCrossOurWriterTheirParser(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	payload := []byte("payload")
	for i := range 3000 {
		h := randHeader(rng, 1+i%2, crossOpts)
		b, err := h.Format()
		if err != nil {
			t.Fatalf("header %d: format: %v", i, err)
		}
		r := bufio.NewReader(bytes.NewReader(append(b, payload...)))
		ph, err := pp.Read(r)
		if err != nil {
			t.Fatalf("header %d %q: go-proxyproto: got error %v, want none", i, b, err)
		}
		if d := diffHeader(noNOOPValues(fromPires(t, ph)), noNOOPValues(h)); d != "" {
			t.Fatalf("header %d %q: go-proxyproto read: %s", i, b, d)
		}
		if rest, _ := io.ReadAll(r); !bytes.Equal(rest, payload) {
			t.Fatalf("header %d: go-proxyproto left %q, want %q", i, rest, payload)
		}
	}
}

func TestCrossTheirWriterOurParser(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	o := crossOpts
	o.noCRC = true
	payload := []byte("payload")
	for i := range 3000 {
		h := randHeader(rng, 1+i%2, o)
		b, err := toPires(t, h).Format()
		if err != nil {
			t.Fatalf("header %d %+v: go-proxyproto format: %v", i, h, err)
		}
		ours, err := h.Format()
		if err != nil {
			t.Fatalf("header %d: format: %v", i, err)
		}
		if !bytes.Equal(b, ours) {
			t.Errorf("header %d: go-proxyproto wrote %q, we write %q", i, b, ours)
		}
		r := bufio.NewReader(bytes.NewReader(append(b, payload...)))
		got, err := Read(r, ReadOptions{})
		if err != nil {
			t.Fatalf("header %d %q: got error %v, want none", i, b, err)
		}
		if d := diffHeader(got, wantAfterRead(h)); d != "" {
			t.Fatalf("header %d %q: %s", i, b, d)
		}
		if rest, _ := io.ReadAll(r); !bytes.Equal(rest, payload) {
			t.Fatalf("header %d: left %q, want %q", i, rest, payload)
		}
	}
}

// TestCrossV1Unknown covers the v1 UNKNOWN line, left out above: both
// libraries write the same bytes; they read it as LOCAL, we as PROXY with
// no addresses, and both mean "use the connection's own addresses".
func TestCrossV1Unknown(t *testing.T) {
	b, err := (&pp.Header{Version: 1, Command: pp.LOCAL, TransportProtocol: pp.UNSPEC}).Format()
	if err != nil {
		t.Fatalf("go-proxyproto format: %v", err)
	}
	ours, _ := (&Header{Version: 1, Command: Local}).Format()
	if !bytes.Equal(b, ours) {
		t.Fatalf("got %q from go-proxyproto, %q from us, want equal", b, ours)
	}
	h, err := Read(bufio.NewReader(bytes.NewReader(b)), ReadOptions{})
	if err != nil || h.Source != nil || h.Destination != nil {
		t.Fatalf("got %+v, %v, want a header without addresses", h, err)
	}
}

// noNOOPValues returns a copy of h with NOOP TLV values emptied.
func noNOOPValues(h *Header) *Header {
	c := *h
	c.TLVs = nil
	for _, x := range h.TLVs {
		if x.Type == TypeNOOP {
			x.Value = nil
		}
		c.TLVs = append(c.TLVs, x)
	}
	return &c
}
