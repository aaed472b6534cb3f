// Package httpbody decodes and encodes HTTP message bodies by their
// Content-Encoding (RFC 9110 section 8.4): gzip, deflate, br and zstd,
// alone or stacked ("gzip, br"), with a bound on the decoded size so that
// a small compressed body cannot expand without limit.
//
// It works on whole bodies in memory; streaming bodies are the caller's
// business. It does not read or set header fields.
//
//	plain, err := httpbody.Decode(h.Get("Content-Encoding"), body, 8<<20)
//	if errors.Is(err, httpbody.ErrUnsupported) { /* pass it on as it is */ }
//	out, err := httpbody.Encode(h.Get("Content-Encoding"), rewrite(plain))
package httpbody

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// ErrUnsupported is an encoding this package does not know.
var ErrUnsupported = errors.New("unsupported content coding")

// ErrTooLarge is a body whose decoded size passes the limit.
var ErrTooLarge = errors.New("decoded body over the limit")

// Codings splits a Content-Encoding value into its codings, in the order
// they were applied, lower case, without "identity".
func Codings(contentEncoding string) []string {
	var out []string
	for c := range strings.SplitSeq(contentEncoding, ",") {
		c = strings.ToLower(strings.TrimSpace(c))
		if c != "" && c != "identity" {
			out = append(out, c)
		}
	}
	return out
}

// Supported reports whether every coding in contentEncoding is one this
// package decodes and encodes.
func Supported(contentEncoding string) bool {
	for _, c := range Codings(contentEncoding) {
		if !known(c) {
			return false
		}
	}
	return true
}

func known(c string) bool {
	switch c {
	case "gzip", "x-gzip", "deflate", "br", "zstd":
		return true
	}
	return false
}

// Decode removes the codings of contentEncoding from body, last applied
// first. The result, and every intermediate one, is at most max bytes,
// else ErrTooLarge.
func Decode(contentEncoding string, body []byte, max int64) ([]byte, error) {
	cs := Codings(contentEncoding)
	for i := len(cs) - 1; i >= 0; i-- {
		out, err := decodeOne(cs[i], body, max)
		if err != nil {
			return nil, err
		}
		body = out
	}
	if int64(len(body)) > max {
		return nil, ErrTooLarge
	}
	return body, nil
}

func decodeOne(c string, body []byte, max int64) ([]byte, error) {
	var r io.Reader
	switch c {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		r = zr
	case "deflate":
		r = deflateReader(body)
	case "br":
		r = brotli.NewReader(bytes.NewReader(body))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(max)+1<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("%w %q", ErrUnsupported, c)
	}
	out, err := readAtMost(r, max, int64(len(body)))
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return nil, ErrTooLarge
	}
	if err != nil && !errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	return out, err
}

// readAtMost reads r to its end into a buffer that grows by doubling
// from about the encoded size, never past limit+1 bytes: a body that
// decodes to more is ErrTooLarge having cost at most that much memory.
func readAtMost(r io.Reader, limit, hint int64) ([]byte, error) {
	buf := make([]byte, 0, min(limit+1, max(4*hint, 4<<10)))
	for {
		if len(buf) == cap(buf) {
			// Double (append grows large slices by a quarter, which
			// would cost five times the result in all), up to limit+1.
			nb := make([]byte, len(buf), min(2*int64(cap(buf)), limit+1))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, ErrTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// deflateReader reads "deflate", which RFC 9110 section 8.4.1.2 defines
// as zlib (RFC 1950); some servers send raw DEFLATE (RFC 1951) instead,
// which a zlib header check tells apart.
func deflateReader(body []byte) io.Reader {
	if len(body) >= 2 && body[0]&0x0f == 8 && (uint16(body[0])<<8|uint16(body[1]))%31 == 0 {
		if zr, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
			return zr
		}
	}
	return flate.NewReader(bytes.NewReader(body))
}

// Encode applies the codings of contentEncoding to body, in order.
func Encode(contentEncoding string, body []byte) ([]byte, error) {
	for _, c := range Codings(contentEncoding) {
		out, err := encodeOne(c, body)
		if err != nil {
			return nil, err
		}
		body = out
	}
	return body, nil
}

func encodeOne(c string, body []byte) ([]byte, error) {
	var buf bytes.Buffer
	var w io.WriteCloser
	switch c {
	case "gzip", "x-gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "br":
		w = brotli.NewWriterLevel(&buf, brotli.DefaultCompression)
	case "zstd":
		zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		w = zw
	default:
		return nil, fmt.Errorf("%w %q", ErrUnsupported, c)
	}
	if _, err := w.Write(body); err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	return buf.Bytes(), nil
}
