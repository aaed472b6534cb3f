package httpbody

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	body := bytes.Repeat([]byte("hello, ferry "), 1000)
	for _, enc := range []string{"", "identity", "gzip", "x-gzip", "deflate", "br", "zstd", "gzip, br", "zstd,gzip", "GZIP"} {
		t.Run(enc, func(t *testing.T) {
			if !Supported(enc) {
				t.Fatalf("Supported(%q) = false", enc)
			}
			z, err := Encode(enc, body)
			if err != nil {
				t.Fatal(err)
			}
			if enc != "" && enc != "identity" && len(z) >= len(body) {
				t.Errorf("%s: encoded %d bytes from %d", enc, len(z), len(body))
			}
			got, err := Decode(enc, z, int64(len(body)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("round trip changed the body")
			}
		})
	}
}

func TestDecodeBounds(t *testing.T) {
	big := make([]byte, 1<<20) // zeros compress about 1000:1
	for _, enc := range []string{"gzip", "deflate", "br", "zstd", "gzip, gzip"} {
		z, err := Encode(enc, big)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(enc, z, 64<<10); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: a 1 MiB body under a 64 KiB limit: err %v, want ErrTooLarge", enc, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		enc  string
		body []byte
		want error
	}{
		{"compress", []byte("x"), ErrUnsupported},
		{"gzip, sdch", []byte("x"), ErrUnsupported},
		{"gzip", []byte("not gzip"), nil},
		{"br", []byte{0xff, 0xff, 0xff}, nil},
		{"zstd", []byte("nope"), nil},
		{"deflate", []byte{0xff}, nil},
	}
	for _, tt := range tests {
		_, err := Decode(tt.enc, tt.body, 1<<20)
		if err == nil {
			t.Errorf("Decode(%q, %q) succeeded", tt.enc, tt.body)
			continue
		}
		if tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("Decode(%q): %v, want %v", tt.enc, err, tt.want)
		}
	}
}

func TestRawDeflate(t *testing.T) {
	// Some servers send RFC 1951 data as "deflate".
	var buf bytes.Buffer
	w := newRawDeflate(&buf)
	w.Write([]byte("raw deflate body"))
	w.Close()
	got, err := Decode("deflate", buf.Bytes(), 1<<10)
	if err != nil || string(got) != "raw deflate body" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, enc := range []string{"gzip", "deflate", "br", "zstd"} {
		z, _ := Encode(enc, []byte("seed body seed body"))
		f.Add(enc, z)
	}
	f.Fuzz(func(t *testing.T, enc string, body []byte) {
		out, err := Decode(enc, body, 1<<16)
		if err == nil && len(out) > 1<<16 {
			t.Fatalf("decoded %d bytes past the limit", len(out))
		}
	})
}

// TestDecodeMemory: a bomb costs about the limit, not its decoded size.
func TestDecodeMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes 64 MiB")
	}
	z, err := Encode("gzip", make([]byte, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	if _, err := Decode("gzip", z, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v", err)
	}
	runtime.ReadMemStats(&m1)
	if got := m1.TotalAlloc - m0.TotalAlloc; got > 3<<20 {
		t.Errorf("decoding a 64 MiB bomb under a 1 MiB limit allocated %d bytes", got)
	}
}
