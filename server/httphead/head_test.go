package httphead

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func readReq(s string, lim Limits) (*Head, error) {
	return ReadRequest(bufio.NewReaderSize(strings.NewReader(s), 16), lim)
}

func TestReadRequestKeepsBytes(t *testing.T) {
	in := "GET http://h/a|b/{x}/\xc3\xa9?q=1|2 HTTP/1.1\r\nx-lower: 1\r\nX-UPPER:2\r\nX-Dup: a \r\nx-dup:\tb\r\n\r\n"
	h, err := readReq(in, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.Method(), "GET"; got != want {
		t.Errorf("method %q, want %q", got, want)
	}
	if got, want := h.Target(), "http://h/a|b/{x}/\xc3\xa9?q=1|2"; got != want {
		t.Errorf("target %q, want %q", got, want)
	}
	lines := []string{"x-lower: 1", "X-UPPER:2", "X-Dup: a ", "x-dup:\tb"}
	values := []string{"1", "2", "a", "b"}
	if h.Len() != len(lines) {
		t.Fatalf("%d fields, want %d", h.Len(), len(lines))
	}
	var out []byte
	for i := range lines {
		if h.Line(i) != lines[i] || h.Value(i) != values[i] {
			t.Errorf("field %d: line %q value %q, want %q %q", i, h.Line(i), h.Value(i), lines[i], values[i])
		}
		out = h.AppendField(out, i)
	}
	if want := strings.Join(lines, "\r\n") + "\r\n"; string(out) != want {
		t.Errorf("appended %q, want %q", out, want)
	}
	if !h.AtLeast11() || h.Size() != len(in) {
		t.Errorf("AtLeast11 %v size %d", h.AtLeast11(), h.Size())
	}
}

func TestReadRequestErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  Limits
		want error // nil: a *SyntaxError
	}{
		{name: "space before colon", in: "GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n"},
		{name: "space in name", in: "GET / HTTP/1.1\r\nX Foo: 1\r\n\r\n"},
		{name: "obs-fold", in: "GET / HTTP/1.1\r\nA: 1\r\n  2\r\n\r\n"},
		{name: "no colon", in: "GET / HTTP/1.1\r\nAbc\r\n\r\n"},
		{name: "empty name", in: "GET / HTTP/1.1\r\n: x\r\n\r\n"},
		{name: "control in value", in: "GET / HTTP/1.1\r\nA: x\x01y\r\n\r\n"},
		{name: "bare CR in value", in: "GET / HTTP/1.1\r\nA: x\ry\r\n\r\n"},
		{name: "bad method", in: "G(T / HTTP/1.1\r\n\r\n"},
		{name: "space in target", in: "GET /a b HTTP/1.1\r\n\r\n"},
		{name: "no version", in: "GET /\r\n\r\n"},
		{name: "lowercase version", in: "GET / http/1.1\r\n\r\n"},
		{name: "HTTP/2", in: "GET / HTTP/2.0\r\n\r\n", want: ErrVersion},
		{name: "too large", in: "GET / HTTP/1.1\r\nA: " + strings.Repeat("x", 200) + "\r\n\r\n", lim: Limits{MaxBytes: 100}, want: ErrTooLarge},
		{name: "too many fields", in: "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", lim: Limits{MaxFields: 2}, want: ErrTooManyFields},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readReq(tt.in, tt.lim)
			var se *SyntaxError
			switch {
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("got %v, want %v", err, tt.want)
			case tt.want == nil && !errors.As(err, &se):
				t.Errorf("got %v, want a syntax error", err)
			}
		})
	}
}

// steps is a reader that returns each read's bytes and error in turn,
// then io.EOF.
type steps []struct {
	data string
	err  error
}

func (s *steps) Read(p []byte) (int, error) {
	if len(*s) == 0 {
		return 0, io.EOF
	}
	st := (*s)[0]
	*s = (*s)[1:]
	return copy(p, st.data), st.err
}

// TestReadResponseErrors: a read error ends ReadResponse, the first time
// it comes. A connection's read deadline is such an error: read on, and
// the next read would wait as long again.
func TestReadResponseErrors(t *testing.T) {
	errTimeout := errors.New("i/o timeout")
	const ok = "HTTP/1.1 200 OK\r\n\r\n"
	tests := []struct {
		name  string
		reads steps
		want  error
	}{
		{"error before a byte", steps{{"", errTimeout}, {ok, nil}}, errTimeout},
		{"error within the first 9 bytes", steps{{"HTTP/1", errTimeout}, {".1 200 OK\r\n\r\n", nil}}, errTimeout},
		{"error later in the head", steps{{"HTTP/1.1 200 OK\r\n", errTimeout}, {"\r\n", nil}}, errTimeout},
		{"nothing", steps{}, io.EOF},
		{"cut within the first 9 bytes", steps{{"HTTP/1", nil}}, io.ErrUnexpectedEOF},
		{"whole in pieces", steps{{"HTTP/1", nil}, {".1 200 OK\r\n", nil}, {"\r\n", nil}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadResponse(bufio.NewReader(&tt.reads), Limits{})
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name, in     string
		status       int
		reason       string
		minor        int
		wantErr      error
		wantSyntaxEr bool
	}{
		{name: "ok", in: "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n", status: 200, reason: "OK", minor: 1},
		{name: "1.0", in: "HTTP/1.0 404 Not Found\r\n\r\n", status: 404, reason: "Not Found"},
		{name: "no reason", in: "HTTP/1.1 204\r\n\r\n", status: 204, minor: 1},
		{name: "empty reason", in: "HTTP/1.1 204 \r\n\r\n", status: 204, minor: 1},
		{name: "LF only", in: "HTTP/1.1 200 OK\nA: 1\n\n", status: 200, reason: "OK", minor: 1},
		{name: "h2 settings", in: "\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64", wantErr: ErrHTTP2},
		{name: "bad code", in: "HTTP/1.1 2x0 OK\r\n\r\n", wantSyntaxEr: true},
		{name: "garbage", in: "hello world, this is not http\r\n\r\n", wantSyntaxEr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ReadResponse(bufio.NewReader(strings.NewReader(tt.in)), Limits{})
			var se *SyntaxError
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("got %v, want %v", err, tt.wantErr)
				}
			case tt.wantSyntaxEr:
				if !errors.As(err, &se) {
					t.Errorf("got %v, want a syntax error", err)
				}
			case err != nil:
				t.Fatal(err)
			case h.Status != tt.status || h.Reason() != tt.reason || h.Minor != tt.minor:
				t.Errorf("got %d %q 1.%d, want %d %q 1.%d", h.Status, h.Reason(), h.Minor, tt.status, tt.reason, tt.minor)
			}
		})
	}
}
