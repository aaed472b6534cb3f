package httphead

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzHead parses any bytes as a request and as a response head and, when
// one parses, checks what an intermediary relies on: every field line
// comes back as it was written, names are tokens, values have no control
// bytes, and framing is decided without panicking; then the rest is
// copied as a body under that framing.
func FuzzHead(f *testing.F) {
	for _, s := range []string{
		"GET http://h/a|b HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.0 200 OK\nTransfer-Encoding: gzip, chunked\n\n3;a=b\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		lim := Limits{MaxBytes: 4096, MaxFields: 50}
		for _, response := range []bool{false, true} {
			br := bufio.NewReaderSize(bytes.NewReader(in), 16)
			var h *Head
			var err error
			if response {
				h, err = ReadResponse(br, lim)
			} else {
				h, err = ReadRequest(br, lim)
			}
			if err != nil {
				continue
			}
			checkHead(t, h, lim)
			var fr Framing
			if response {
				fr, err = ResponseFraming(h, "GET")
			} else {
				fr, err = RequestFraming(h)
			}
			if err != nil {
				continue
			}
			var out bytes.Buffer
			c := Copier{Buf: make([]byte, 32), Limits: lim}
			if err := c.Copy(&out, br, fr); err == nil && fr.Kind == Chunked && !bytes.HasSuffix(out.Bytes(), []byte("\r\n")) {
				t.Fatalf("chunked body copied without its final CRLF: %q", out.Bytes())
			}
		}
	})
}

func checkHead(t *testing.T, h *Head, lim Limits) {
	if h.Size() > lim.MaxBytes || h.Len() > lim.MaxFields {
		t.Fatalf("head of %d bytes and %d fields passed limits %+v", h.Size(), h.Len(), lim)
	}
	for i := range h.Len() {
		line := string(h.AppendField(nil, i))
		if !strings.Contains(h.raw, line) && !strings.Contains(h.raw, strings.TrimSuffix(line, "\r\n")+"\n") {
			t.Fatalf("field %d %q is not a line of the head", i, line)
		}
		name := h.Name(i)
		for j := 0; j < len(name); j++ {
			if !isTchar(name[j]) {
				t.Fatalf("field name %q has a non-token byte", name)
			}
		}
		for _, c := range []byte(h.Value(i)) {
			if c < ' ' && c != '\t' || c == 0x7f {
				t.Fatalf("field value %q has a control byte", h.Value(i))
			}
		}
	}
}

// FuzzBodyReader reads any bytes as a chunked body with BodyReader and
// with a de-chunking Copier: both take the same data, and fail or
// succeed together, whatever sizes the reads come in.
func FuzzBodyReader(f *testing.F) {
	for _, s := range []string{
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
		"0\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n",
		"ffffffffffffffff\r\n",
		"3\r\nabcX\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, size uint8) {
		lim := Limits{MaxBytes: 256, MaxFields: 5}
		fr := Framing{Kind: Chunked}
		var want bytes.Buffer
		c := Copier{Buf: make([]byte, 32), Dechunk: true, Limits: lim}
		werr := c.Copy(&want, bufio.NewReaderSize(bytes.NewReader(in), 16), fr)
		r := NewBodyReader(bufio.NewReaderSize(bytes.NewReader(in), 16), fr, lim)
		var got bytes.Buffer
		buf := make([]byte, int(size)+1)
		var err error
		for range len(in) + 2 {
			var n int
			n, err = r.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if err == io.EOF {
			err = nil
		}
		if (err == nil) != (werr == nil) || !bytes.HasPrefix(want.Bytes(), got.Bytes()) || err == nil && !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("BodyReader %q, %v; Copier %q, %v", got.Bytes(), err, want.Bytes(), werr)
		}
	})
}
