// Package httphead reads and writes HTTP/1.x message heads as the peer
// wrote them: the start line and every field line, in order, with the
// names' case and repeated fields kept, so that an intermediary can pass
// on what it does not change byte for byte (RFC 9110 section 7.6).
//
// It is strict where leniency lets two parties disagree about where a
// message ends (RFC 9112 sections 5 and 6): whitespace before a colon, a
// space inside a field name, obs-fold, control bytes in values and
// conflicting framing fields are errors. It bounds what it holds: a head
// over Limits.MaxBytes or with more than Limits.MaxFields field lines is
// an error before more is read.
//
// It does not parse URLs or field values beyond framing, decode content
// codings, or speak HTTP/2. Bodies are copied as framed (Copier) or read
// without their framing (BodyReader).
//
//	h, err := httphead.ReadRequest(br, httphead.Limits{MaxBytes: 64 << 10, MaxFields: 100})
//	for i := range h.Len() { name, value := h.Name(i), h.Value(i) ... }
//	out = h.AppendField(out, i) // the line as it came, with CRLF
package httphead

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits bounds one head. Zero fields mean no limit.
type Limits struct {
	MaxBytes  int // start line and field lines, line endings included
	MaxFields int
}

// Errors a caller branches on. Syntax errors are *SyntaxError.
var (
	ErrTooLarge      = errors.New("head too large")
	ErrTooManyFields = errors.New("too many header fields")
	// ErrVersion: an HTTP version other than 1.x (505 for a request).
	ErrVersion = errors.New("unsupported HTTP version")
)

// SyntaxError is a head that breaks the grammar; for a request the answer
// is 400 (RFC 9112 section 2.2), for a response 502.
type SyntaxError struct{ Msg string }

func (e *SyntaxError) Error() string { return "malformed head: " + e.Msg }

func syntaxErr(format string, args ...any) error {
	return &SyntaxError{Msg: fmt.Sprintf(format, args...)}
}

// span is a range of Head.raw.
type span struct{ start, end int32 }

type field struct {
	line, name, value span
}

// Head is one message head. Its strings share one backing string.
type Head struct {
	raw    string
	first  span
	fields []field
	// The start line's parts: for a request method, target; for a
	// response the status code and reason.
	a, b  span
	Major int
	Minor int
	// Status is a response's status code.
	Status int
}

func (h *Head) str(s span) string { return h.raw[s.start:s.end] }

// Len is the number of field lines.
func (h *Head) Len() int { return len(h.fields) }

// Name is field line i's name as written.
func (h *Head) Name(i int) string { return h.str(h.fields[i].name) }

// Value is field line i's value without surrounding whitespace.
func (h *Head) Value(i int) string { return h.str(h.fields[i].value) }

// Line is field line i as written, without its line ending.
func (h *Head) Line(i int) string { return h.str(h.fields[i].line) }

// AppendField appends field line i as written, ending in CRLF.
func (h *Head) AppendField(dst []byte, i int) []byte {
	return append(append(dst, h.Line(i)...), '\r', '\n')
}

// Method is a request's method.
func (h *Head) Method() string { return h.str(h.a) }

// Target is a request's request-target as written.
func (h *Head) Target() string { return h.str(h.b) }

// Reason is a response's reason phrase as written (possibly empty).
func (h *Head) Reason() string { return h.str(h.b) }

// AtLeast11 reports an HTTP/1.1 (or later 1.x) message.
func (h *Head) AtLeast11() bool { return h.Minor >= 1 }

// Size is the head's length on the wire.
func (h *Head) Size() int { return len(h.raw) }

// ReadRequest reads a request head. Empty lines before the request line
// are skipped (RFC 9112 section 2.2).
func ReadRequest(br *bufio.Reader, lim Limits) (*Head, error) {
	h, err := read(br, lim, true)
	if err != nil {
		return nil, err
	}
	if err := h.parseRequestLine(); err != nil {
		return nil, err
	}
	return h, nil
}

// ErrHTTP2 is a response that starts with HTTP/2 frames: an origin that
// speaks only HTTP/2 answering an HTTP/1.1 request.
var ErrHTTP2 = errors.New("peer speaks HTTP/2 frames, not HTTP/1.x")

// ReadResponse reads a response head.
func ReadResponse(br *bufio.Reader, lim Limits) (*Head, error) {
	switch p, err := br.Peek(9); {
	case err == nil && isHTTP2Frame(p):
		return nil, ErrHTTP2
	case err != nil && err != io.EOF:
		// Peek has taken the error out of br: reading on would wait
		// again, so a reader's timeout would give twice its wait. An EOF
		// stays on the connection, and read tells a cut head from none.
		return nil, err
	}
	h, err := read(br, lim, false)
	if err != nil {
		return nil, err
	}
	if err := h.parseStatusLine(); err != nil {
		return nil, err
	}
	return h, nil
}

// read collects the head's lines into one buffer and indexes them.
func read(br *bufio.Reader, lim Limits, skipEmpty bool) (*Head, error) {
	// Heads are gathered on the stack and copied once into the Head's
	// string: appending to a nil slice grew it five or six times a head.
	var stack [headStack]byte
	buf := stack[:0]
	lines, skipped := 0, 0
	for {
		start := len(buf)
		var err error
		buf, err = readLine(br, buf, lim.MaxBytes)
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line := buf[start:]
		if isEmptyLine(line) {
			if lines == 0 && skipEmpty && skipped < 4 {
				// A stray CRLF after a previous body (RFC 9112
				// section 2.2), a few at most.
				buf, skipped = buf[:0], skipped+1
				continue
			}
			if lines == 0 {
				return nil, syntaxErr("empty start line")
			}
			break
		}
		lines++
		if lim.MaxFields > 0 && lines-1 > lim.MaxFields {
			return nil, ErrTooManyFields
		}
	}
	h := &Head{raw: string(buf)}
	if err := h.index(lines); err != nil {
		return nil, err
	}
	return h, nil
}

func isEmptyLine(l []byte) bool {
	return len(l) == 1 && l[0] == '\n' || len(l) == 2 && l[0] == '\r' && l[1] == '\n'
}

// headStack is the room read gathers a head in before it needs the heap:
// most requests' and responses' heads fit.
const headStack = 2048

// readLine appends one line, ending included, to buf, failing once buf
// would pass limit bytes.
func readLine(br *bufio.Reader, buf []byte, limit int) ([]byte, error) {
	for {
		frag, err := br.ReadSlice('\n')
		if limit > 0 && len(buf)+len(frag) > limit {
			return buf, ErrTooLarge
		}
		buf = append(buf, frag...)
		if err == nil {
			return buf, nil
		}
		if err != bufio.ErrBufferFull {
			return buf, err
		}
	}
}

// lineEnd returns the end of the line starting at i (before CRLF or LF)
// and the start of the next.
func lineEnd(raw string, i int) (end, next int, err error) {
	j := i
	for raw[j] != '\n' {
		j++
	}
	next = j + 1
	if j > i && raw[j-1] == '\r' {
		j--
	}
	return j, next, nil
}

// index splits raw into the start line and field lines, checking each
// field line's grammar (RFC 9112 section 5, RFC 9110 section 5.5).
func (h *Head) index(lines int) error {
	raw := h.raw
	end, next, _ := lineEnd(raw, 0)
	h.first = span{0, int32(end)}
	h.fields = make([]field, 0, lines-1)
	for next < len(raw) {
		start := next
		end, next, _ = lineEnd(raw, start)
		if end == start {
			break // the empty line that ends the head
		}
		f, err := parseField(raw, start, end)
		if err != nil {
			return err
		}
		h.fields = append(h.fields, f)
	}
	return nil
}

func parseField(raw string, start, end int) (field, error) {
	line := raw[start:end]
	if line[0] == ' ' || line[0] == '\t' {
		return field{}, syntaxErr("obs-fold line continuation")
	}
	colon := -1
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c == ':' {
			colon = i
			break
		}
		if !isTchar(c) {
			return field{}, syntaxErr("invalid byte %q in field name %q", c, clip(line[:i+1]))
		}
	}
	if colon <= 0 {
		return field{}, syntaxErr("field line without name or colon: %q", clip(line))
	}
	vs, ve := colon+1, len(line)
	for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
		vs++
	}
	for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
		ve--
	}
	for i := vs; i < ve; i++ {
		if c := line[i]; c < ' ' && c != '\t' || c == 0x7f {
			return field{}, syntaxErr("control byte %q in field %q", c, clip(line[:colon]))
		}
	}
	s := int32(start)
	return field{
		line:  span{s, int32(end)},
		name:  span{s, s + int32(colon)},
		value: span{s + int32(vs), s + int32(ve)},
	}, nil
}

// clip shortens what error messages echo of a peer's bytes.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// parseRequestLine: method SP request-target SP HTTP-version (RFC 9112
// section 3). The target may hold any visible byte, obs-text included:
// clients send '|', '{' and raw UTF-8, and what they send is passed on.
func (h *Head) parseRequestLine() error {
	line := h.str(h.first)
	sp1 := strings.IndexByte(line, ' ')
	if sp1 <= 0 {
		return syntaxErr("request line %q", clip(line))
	}
	for i := 0; i < sp1; i++ {
		if !isTchar(line[i]) {
			return syntaxErr("invalid method %q", clip(line[:sp1]))
		}
	}
	rest := line[sp1+1:]
	sp2 := len(rest) - 9 // " HTTP/1.x"
	if sp2 <= 0 || rest[sp2] != ' ' {
		return syntaxErr("request line %q", clip(line))
	}
	for i := 0; i < sp2; i++ {
		if c := rest[i]; c <= ' ' || c == 0x7f {
			return syntaxErr("invalid byte %q in request-target", c)
		}
	}
	if err := h.parseVersion(rest[sp2+1:]); err != nil {
		return err
	}
	s := h.first.start
	h.a = span{s, s + int32(sp1)}
	h.b = span{s + int32(sp1) + 1, s + int32(sp1) + 1 + int32(sp2)}
	return nil
}

// parseStatusLine: HTTP-version SP status-code SP [reason-phrase]
// (RFC 9112 section 4; a missing SP after the code is tolerated).
func (h *Head) parseStatusLine() error {
	line := h.str(h.first)
	if len(line) < 12 || line[8] != ' ' {
		return syntaxErr("status line %q", clip(line))
	}
	if err := h.parseVersion(line[:8]); err != nil {
		return err
	}
	code, err := strconv.Atoi(line[9:12])
	if err != nil || code < 100 || line[9] == '+' || line[9] == '-' {
		return syntaxErr("status code in %q", clip(line))
	}
	h.Status = code
	s := h.first.start
	h.b = span{s + 12, s + 12}
	if len(line) > 12 {
		if line[12] != ' ' {
			return syntaxErr("status line %q", clip(line))
		}
		for i := 13; i < len(line); i++ {
			if c := line[i]; c < ' ' && c != '\t' || c == 0x7f {
				return syntaxErr("control byte in reason phrase")
			}
		}
		h.b = span{s + 13, s + int32(len(line))}
	}
	return nil
}

func (h *Head) parseVersion(v string) error {
	if len(v) != 8 || v[:5] != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return syntaxErr("HTTP version %q", clip(v))
	}
	if v[5] != '1' {
		return ErrVersion
	}
	h.Major, h.Minor = 1, int(v[7]-'0')
	return nil
}

// isHTTP2Frame reports a SETTINGS or GOAWAY frame header on stream 0
// (RFC 9113 section 4.1), what an HTTP/2-only server sends first.
func isHTTP2Frame(p []byte) bool {
	return (p[3] == 0x4 || p[3] == 0x7) && p[5]&0x7f == 0 && p[6] == 0 && p[7] == 0 && p[8] == 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isTchar reports a token byte (RFC 9110 section 5.6.2).
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
