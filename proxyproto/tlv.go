package proxyproto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// TLV is one v2 type-length-value extension. Value is at most 65535 bytes.
type TLV struct {
	Type  byte
	Value []byte
}

// TLV types registered by the specification (section 2.2).
const (
	TypeALPN      = 0x01 // ALPN protocol, e.g. "h2"
	TypeAuthority = 0x02 // host name the client asked for (TLS SNI), UTF-8
	TypeCRC32C    = 0x03 // CRC32c of the whole header; Read verifies it
	TypeNOOP      = 0x04 // padding; ignored
	TypeUniqueID  = 0x05 // opaque connection ID, at most MaxUniqueIDLen bytes
	TypeSSL       = 0x20 // TLS details: see SSLInfo
	TypeNetNS     = 0x30 // network namespace name, US-ASCII

	// Sub-types found inside a TypeSSL value.
	SubtypeSSLVersion = 0x21 // TLS version, e.g. "TLSv1.3"
	SubtypeSSLCN      = 0x22 // client certificate's Common Name
	SubtypeSSLCipher  = 0x23 // cipher, e.g. "ECDHE-RSA-AES128-GCM-SHA256"
	SubtypeSSLSigAlg  = 0x24 // frontend certificate signature algorithm
	SubtypeSSLKeyAlg  = 0x25 // frontend certificate key algorithm
)

// Bits of SSLInfo.Client.
const (
	ClientSSL      = 0x01 // the client connected over TLS
	ClientCertConn = 0x02 // it sent a certificate on this connection
	ClientCertSess = 0x04 // it sent a certificate at least once in the session
)

// MaxUniqueIDLen is the longest TypeUniqueID value the specification allows.
const MaxUniqueIDLen = 128

// sslFixedLen is the client byte plus the 32-bit verify field that open a
// TypeSSL value.
const sslFixedLen = 5

// SSLInfo is the decoded value of a TypeSSL TLV.
type SSLInfo struct {
	// Client is a bit set of ClientSSL, ClientCertConn and ClientCertSess.
	Client byte
	// Verify is zero if the client presented a certificate and it was
	// verified, non-zero otherwise.
	Verify uint32
	// TLVs are the sub-TLVs (SubtypeSSLVersion, SubtypeSSLCN, ...).
	TLVs []TLV
}

// Version returns the SubtypeSSLVersion sub-TLV, or "" if absent.
func (s SSLInfo) Version() string { return string(first(s.TLVs, SubtypeSSLVersion)) }

// CN returns the SubtypeSSLCN sub-TLV, or "" if absent.
func (s SSLInfo) CN() string { return string(first(s.TLVs, SubtypeSSLCN)) }

// Cipher returns the SubtypeSSLCipher sub-TLV, or "" if absent.
func (s SSLInfo) Cipher() string { return string(first(s.TLVs, SubtypeSSLCipher)) }

// SigAlg returns the SubtypeSSLSigAlg sub-TLV, or "" if absent.
func (s SSLInfo) SigAlg() string { return string(first(s.TLVs, SubtypeSSLSigAlg)) }

// KeyAlg returns the SubtypeSSLKeyAlg sub-TLV, or "" if absent.
func (s SSLInfo) KeyAlg() string { return string(first(s.TLVs, SubtypeSSLKeyAlg)) }

// TLV encodes s as a TypeSSL TLV to put in Header.TLVs. A value too long for
// the 16-bit length field makes Format fail.
func (s SSLInfo) TLV() TLV {
	n := sslFixedLen
	for _, t := range s.TLVs {
		n += 3 + len(t.Value)
	}
	v := make([]byte, sslFixedLen, n)
	v[0] = s.Client
	binary.BigEndian.PutUint32(v[1:], s.Verify)
	for _, t := range s.TLVs {
		v = appendTLV(v, t.Type, t.Value)
	}
	return TLV{Type: TypeSSL, Value: v}
}

// TLV returns the value of the first TLV of type typ.
func (h *Header) TLV(typ byte) ([]byte, bool) {
	for _, t := range h.TLVs {
		if t.Type == typ {
			return t.Value, true
		}
	}
	return nil, false
}

// ALPN returns the TypeALPN value (e.g. "h2"), or nil if absent.
func (h *Header) ALPN() []byte { return first(h.TLVs, TypeALPN) }

// Authority returns the TypeAuthority value (the TLS SNI host name), or ""
// if absent.
func (h *Header) Authority() string { return string(first(h.TLVs, TypeAuthority)) }

// UniqueID returns the TypeUniqueID value, or nil if absent.
func (h *Header) UniqueID() []byte { return first(h.TLVs, TypeUniqueID) }

// NetNS returns the TypeNetNS value, or "" if absent.
func (h *Header) NetNS() string { return string(first(h.TLVs, TypeNetNS)) }

// SSL decodes the first TypeSSL TLV. It reports false if there is none or
// if it is malformed (Read rejects malformed ones, so only hand-built
// headers can have them). The sub-TLV values share memory with h.TLVs.
func (h *Header) SSL() (SSLInfo, bool) {
	v, ok := h.TLV(TypeSSL)
	if !ok {
		return SSLInfo{}, false
	}
	s, err := parseSSL(v)
	return s, err == nil
}

// AddCRC32C asks Format to checksum the header: it appends a TypeCRC32C TLV
// unless h already has one. Format fills in the value, so it stays right
// when other fields change.
func (h *Header) AddCRC32C() {
	if _, ok := h.TLV(TypeCRC32C); !ok {
		h.TLVs = append(h.TLVs, TLV{Type: TypeCRC32C, Value: make([]byte, 4)})
	}
}

func first(tlvs []TLV, typ byte) []byte {
	for _, t := range tlvs {
		if t.Type == typ {
			return t.Value
		}
	}
	return nil
}

func appendTLV(b []byte, typ byte, v []byte) []byte {
	b = append(b, typ, byte(len(v)>>8), byte(len(v)))
	return append(b, v...)
}

// splitTLVs cuts b into TLVs whose values alias b. The TLVs must fill b
// exactly.
func splitTLVs(b []byte) ([]TLV, error) {
	n := 0
	for i := 0; i < len(b); n++ {
		if len(b)-i < 3 {
			return nil, fmt.Errorf("%d trailing bytes cannot hold a TLV", len(b)-i)
		}
		l := int(binary.BigEndian.Uint16(b[i+1:]))
		if l > len(b)-i-3 {
			return nil, fmt.Errorf("TLV type 0x%02x at offset %d: length %d overruns the %d bytes left", b[i], i, l, len(b)-i-3)
		}
		i += 3 + l
	}
	if n == 0 {
		return nil, nil
	}
	tlvs := make([]TLV, 0, n)
	for i := 0; i < len(b); {
		l := int(binary.BigEndian.Uint16(b[i+1:]))
		tlvs = append(tlvs, TLV{Type: b[i], Value: b[i+3 : i+3+l : i+3+l]})
		i += 3 + l
	}
	return tlvs, nil
}

func parseSSL(v []byte) (SSLInfo, error) {
	if len(v) < sslFixedLen {
		return SSLInfo{}, fmt.Errorf("SSL TLV: %d bytes, want at least %d", len(v), sslFixedLen)
	}
	sub, err := splitTLVs(v[sslFixedLen:])
	if err != nil {
		return SSLInfo{}, fmt.Errorf("SSL TLV: %w", err)
	}
	return SSLInfo{Client: v[0], Verify: binary.BigEndian.Uint32(v[1:]), TLVs: sub}, nil
}

var errManyCRC = errors.New("more than one CRC32C TLV")

// checkTLVs applies the per-type rules the reader enforces and the writer
// must respect. It returns the index of the CRC32C TLV, or -1.
func checkTLVs(tlvs []TLV) (crc int, err error) {
	crc = -1
	for i, t := range tlvs {
		if len(t.Value) > 0xffff {
			return -1, fmt.Errorf("TLV type 0x%02x: %d bytes, want at most 65535", t.Type, len(t.Value))
		}
		switch t.Type {
		case TypeCRC32C:
			if crc >= 0 {
				return -1, errManyCRC
			}
			if len(t.Value) != 4 {
				return -1, fmt.Errorf("CRC32C TLV: %d bytes, want 4", len(t.Value))
			}
			crc = i
		case TypeUniqueID:
			if len(t.Value) > MaxUniqueIDLen {
				return -1, fmt.Errorf("UNIQUE_ID TLV: %d bytes, want at most %d", len(t.Value), MaxUniqueIDLen)
			}
		case TypeSSL:
			if _, err := parseSSL(t.Value); err != nil {
				return -1, err
			}
		}
	}
	return crc, nil
}
