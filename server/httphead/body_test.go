package httphead

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestFraming(t *testing.T) {
	tests := []struct {
		name     string
		head     string
		response bool
		method   string
		want     Framing
		wantErr  bool
	}{
		{name: "no body", head: "POST / HTTP/1.1\r\n\r\n", want: Framing{}},
		{name: "length", head: "POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", want: Framing{Kind: Length, Length: 12}},
		{name: "repeated equal lengths", head: "POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5, 5\r\n\r\n", want: Framing{Kind: Length, Length: 5}},
		{name: "conflicting lengths", head: "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", wantErr: true},
		{name: "empty length", head: "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", wantErr: true},
		{name: "signed length", head: "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", wantErr: true},
		{name: "chunked", head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", want: Framing{Kind: Chunked, HasTE: true}},
		{name: "CL and TE", head: "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", want: Framing{Kind: Chunked, HasTE: true, Ambiguous: true}},
		{name: "gzip then chunked", head: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", want: Framing{Kind: Chunked, HasTE: true}},
		{name: "chunked not last", head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", wantErr: true},
		{name: "request TE not chunked", head: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", wantErr: true},
		{name: "HTTP/1.0 with TE", head: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", wantErr: true},
		{name: "response empty length", head: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", response: true, want: Framing{}},
		{name: "response close", head: "HTTP/1.1 200 OK\r\n\r\n", response: true, want: Framing{Kind: Close}},
		{name: "response HEAD", head: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", response: true, method: "HEAD", want: Framing{}},
		{name: "response 304", head: "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", response: true, want: Framing{}},
		{name: "response TE not chunked", head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", response: true, wantErr: true},
		{name: "response CL and TE", head: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", response: true, want: Framing{Kind: Chunked, HasTE: true, Ambiguous: true}},
		{name: "response 1.0 TE", head: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", response: true, want: Framing{Kind: Chunked, HasTE: true, Ambiguous: true}},
		{name: "response conflicting", head: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", response: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.head))
			var fr Framing
			var err error
			if tt.response {
				var h *Head
				if h, err = ReadResponse(br, Limits{}); err != nil {
					t.Fatal(err)
				}
				fr, err = ResponseFraming(h, tt.method)
			} else {
				var h *Head
				if h, err = ReadRequest(br, Limits{}); err != nil {
					t.Fatal(err)
				}
				fr, err = RequestFraming(h)
			}
			if tt.wantErr {
				if !errors.Is(err, ErrFraming) {
					t.Errorf("got %+v, %v; want ErrFraming", fr, err)
				}
				return
			}
			if err != nil || fr != tt.want {
				t.Errorf("got %+v, %v; want %+v", fr, err, tt.want)
			}
		})
	}
}

func TestCopy(t *testing.T) {
	chunked := "5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer-A: x\r\n\r\n"
	tests := []struct {
		name    string
		fr      Framing
		dechunk bool
		in      string
		want    string
		rest    string
		wantErr error
	}{
		{name: "length", fr: Framing{Kind: Length, Length: 5}, in: "helloNEXT", want: "hello", rest: "NEXT"},
		{name: "length short", fr: Framing{Kind: Length, Length: 9}, in: "hello", wantErr: io.ErrUnexpectedEOF},
		{name: "close", fr: Framing{Kind: Close}, in: "all of it", want: "all of it"},
		{name: "chunked raw", fr: Framing{Kind: Chunked}, in: chunked + "NEXT", want: chunked, rest: "NEXT"},
		{name: "chunked dechunked", fr: Framing{Kind: Chunked}, dechunk: true, in: chunked, want: "hello!"},
		{name: "bare LF", fr: Framing{Kind: Chunked}, in: "5\nhello\r\n0\r\n\r\n", wantErr: ErrChunk},
		{name: "no CRLF after data", fr: Framing{Kind: Chunked}, in: "5\r\nhelloX\r\n0\r\n\r\n", wantErr: ErrChunk},
		{name: "bad size", fr: Framing{Kind: Chunked}, in: "5x\r\nhello\r\n0\r\n\r\n", wantErr: ErrChunk},
		{name: "huge size", fr: Framing{Kind: Chunked}, in: "fffffffffffffffff\r\n", wantErr: ErrChunk},
		{name: "no size", fr: Framing{Kind: Chunked}, in: ";x\r\n", wantErr: ErrChunk},
		{name: "bad trailer", fr: Framing{Kind: Chunked}, in: "0\r\nA B: 1\r\n\r\n", wantErr: ErrChunk},
		{name: "cut chunk", fr: Framing{Kind: Chunked}, in: "5\r\nhel", wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			var dst bytes.Buffer
			c := Copier{Buf: make([]byte, 16), Dechunk: tt.dechunk, Limits: Limits{MaxBytes: 1024, MaxFields: 10}}
			err := c.Copy(&dst, src, tt.fr)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("got %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(src)
			if dst.String() != tt.want || string(rest) != tt.rest {
				t.Errorf("copied %q leaving %q, want %q leaving %q", dst.String(), rest, tt.want, tt.rest)
			}
		})
	}
}

// A writer error is told apart from the source's.
func TestCopyWriteError(t *testing.T) {
	c := Copier{Buf: make([]byte, 16)}
	err := c.Copy(failWriter{}, bufio.NewReader(strings.NewReader("abc")), Framing{Kind: Length, Length: 3})
	var we *WriteError
	if !errors.As(err, &we) {
		t.Errorf("got %v, want a WriteError", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("boom") }

// BodyReader gives the body without its framing, stops at its end, and
// refuses what Copier refuses; small reads see the same bytes.
func TestBodyReader(t *testing.T) {
	tests := []struct {
		name, in string
		fr       Framing
		want     string
		wantErr  error
	}{
		{name: "chunked", in: "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT", fr: Framing{Kind: Chunked}, want: "hello world"},
		{name: "length", in: "hello worldNEXT", fr: Framing{Kind: Length, Length: 11}, want: "hello world"},
		{name: "close", in: "hello world", fr: Framing{Kind: Close}, want: "hello world"},
		{name: "none", in: "NEXT", fr: Framing{}, want: ""},
		{name: "bare LF", in: "5\nhello\r\n0\r\n\r\n", fr: Framing{Kind: Chunked}, wantErr: ErrChunk},
		{name: "no CRLF after data", in: "5\r\nhelloX\r\n0\r\n\r\n", fr: Framing{Kind: Chunked}, want: "hello", wantErr: ErrChunk},
		{name: "bad trailer", in: "5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", fr: Framing{Kind: Chunked}, want: "hello", wantErr: ErrChunk},
		{name: "cut chunk", in: "5\r\nhel", fr: Framing{Kind: Chunked}, want: "hel", wantErr: io.ErrUnexpectedEOF},
		{name: "cut length", in: "hel", fr: Framing{Kind: Length, Length: 5}, want: "hel", wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, size := range []int{1, 4096} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, size), func(t *testing.T) {
				src := bufio.NewReader(strings.NewReader(tt.in))
				r := NewBodyReader(src, tt.fr, Limits{MaxBytes: 1024, MaxFields: 10})
				var got bytes.Buffer
				buf := make([]byte, size)
				var err error
				for range 1000 {
					var n int
					n, err = r.Read(buf)
					got.Write(buf[:n])
					if err != nil {
						break
					}
				}
				if got.String() != tt.want {
					t.Errorf("body: got %q, want %q", got.String(), tt.want)
				}
				switch {
				case tt.wantErr == nil && err != io.EOF:
					t.Errorf("end: got %v, want EOF", err)
				case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
					t.Errorf("error: got %v, want %v", err, tt.wantErr)
				}
				if tt.wantErr == nil && tt.fr.Kind != Close {
					if rest, _ := io.ReadAll(src); !r.Done() || !strings.HasPrefix(string(rest), "NEXT") {
						t.Errorf("after the body: done %v, rest %q", r.Done(), rest)
					}
				}
			})
		}
	}
}
