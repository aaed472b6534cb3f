package httphead

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Kind is how a message body is delimited (RFC 9112 section 6).
type Kind uint8

const (
	// None: no body (a HEAD response, 1xx, 204, 304, or a request
	// without framing fields).
	None Kind = iota
	// Length: Content-Length bytes.
	Length
	// Chunked: the chunked transfer coding is the final one.
	Chunked
	// Close: the body runs until the sender closes (responses only).
	Close
)

// Framing says where a message's body ends.
type Framing struct {
	Kind   Kind
	Length int64
	// Ambiguous: the message had Transfer-Encoding together with
	// Content-Length, or Transfer-Encoding in HTTP/1.0. Transfer-Encoding
	// decides the body, Content-Length must not be forwarded, and the
	// connection it came on must be closed after it (RFC 9112 section
	// 6.1 and 6.3).
	Ambiguous bool
	// HasTE: the message had a Transfer-Encoding field.
	HasTE bool
}

// ErrFraming is a message whose body length cannot be determined: a
// request is answered 400, a response 502 and its connection closed (RFC
// 9112 section 6.3, items 4 and 5).
var ErrFraming = errors.New("invalid message framing")

// RequestFraming reads a request's framing fields.
func RequestFraming(h *Head) (Framing, error) {
	fr, _, err := framing(h)
	if err != nil {
		return fr, err
	}
	if fr.HasTE && fr.Kind != Chunked {
		// RFC 9112 section 6.3 item 4: a request whose final coding is
		// not chunked has no determinable length.
		return fr, errors.Join(ErrFraming, errors.New("transfer coding of a request does not end in chunked"))
	}
	if fr.HasTE && !h.AtLeast11() {
		// Section 6.1: an HTTP/1.0 message with Transfer-Encoding has
		// faulty framing; ferry refuses it rather than guess.
		return fr, errors.Join(ErrFraming, errors.New("Transfer-Encoding in an HTTP/1.0 request"))
	}
	return fr, nil
}

// ResponseFraming reads a response's framing fields; method is the
// request's.
func ResponseFraming(h *Head, method string) (Framing, error) {
	// Framing fields are checked even where no body follows: a client
	// must not get conflicting ones.
	fr, hasLength, err := framing(h)
	if err != nil {
		return fr, err
	}
	if c := h.Status; method == "HEAD" || c < 200 || c == 204 || c == 304 {
		return Framing{Kind: None, HasTE: fr.HasTE}, nil
	}
	if fr.HasTE && fr.Kind != Chunked {
		// Section 6.3 item 4 would read such a body until close, but
		// its coding could be passed on only as it came, and clients
		// refuse codings other than chunked: ferry answers 502.
		return fr, errors.Join(ErrFraming, errors.New("transfer coding of a response does not end in chunked"))
	}
	if fr.HasTE && !h.AtLeast11() {
		fr.Ambiguous = true
	}
	if !fr.HasTE && !hasLength {
		fr.Kind = Close
	}
	return fr, nil
}

// framing reads the framing fields; hasLength reports a Content-Length,
// whose 0 is a body of none rather than one delimited by close.
func framing(h *Head) (fr Framing, hasLength bool, err error) {
	cl := ""
	for i := range h.Len() {
		name := h.Name(i)
		switch {
		case strings.EqualFold(name, "Transfer-Encoding"):
			fr.HasTE = true
			for c := range strings.SplitSeq(h.Value(i), ",") {
				c = strings.TrimSpace(c)
				switch {
				case c == "":
				case fr.Kind == Chunked:
					// Chunked must be the final coding, applied once.
					return fr, false, errors.Join(ErrFraming, errors.New("a coding after chunked"))
				case strings.EqualFold(c, "chunked"):
					fr.Kind = Chunked
				}
			}
		case strings.EqualFold(name, "Content-Length"):
			for v := range strings.SplitSeq(h.Value(i), ",") {
				v = strings.TrimSpace(v)
				if v == "" {
					return fr, false, errors.Join(ErrFraming, errors.New("empty Content-Length"))
				}
				if cl != "" && v != cl {
					return fr, false, errors.Join(ErrFraming, errors.New("conflicting Content-Length values"))
				}
				cl = v
			}
		}
	}
	if cl != "" {
		n, err := parseLength(cl)
		if err != nil {
			return fr, false, err
		}
		if fr.HasTE {
			fr.Ambiguous = true
			return fr, true, nil
		}
		fr.Kind, fr.Length = Length, n
		if n == 0 {
			fr.Kind = None
		}
	}
	return fr, cl != "", nil
}

func parseLength(v string) (int64, error) {
	if v == "" || len(v) > 18 {
		return 0, errors.Join(ErrFraming, errors.New("invalid Content-Length"))
	}
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0, errors.Join(ErrFraming, errors.New("invalid Content-Length"))
		}
	}
	return strconv.ParseInt(v, 10, 64)
}

// Codings is the message's transfer codings as one list, in order, with
// the empty elements a list may carry dropped ("chunked," is "chunked"):
// what a Transfer-Encoding field passed on says, so that a recipient
// stricter than RFC 9110 section 5.6.1 asks reads the same framing.
func Codings(h *Head) string {
	var b strings.Builder
	for i := range h.Len() {
		if !strings.EqualFold(h.Name(i), "Transfer-Encoding") {
			continue
		}
		for c := range strings.SplitSeq(h.Value(i), ",") {
			if c = strings.TrimSpace(c); c != "" {
				if b.Len() > 0 {
					b.WriteString(", ")
				}
				b.WriteString(c)
			}
		}
	}
	return b.String()
}

// IsFramingField reports the fields that carry framing, which a copier
// that re-frames a body must not pass on as they came.
func IsFramingField(name string) bool {
	return strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Transfer-Encoding")
}

// Copier copies bodies as framed, chunk framing included unless Dechunk,
// so the receiver gets the sender's bytes. Buf is the copy buffer: at
// least the size of the source reader's buffer, so large reads skip it.
type Copier struct {
	Buf []byte
	// Dechunk removes chunk framing and trailers: for an HTTP/1.0
	// recipient of a chunked body, which the caller then ends by closing.
	Dechunk bool
	// Limits bound a chunk-size line and the trailer section.
	Limits Limits
	// Flush, if set, is flushed before a read that would wait for the
	// source, so a writer that buffers still streams. An interface
	// rather than a func: a *bufio.Writer goes in as it is, where its
	// method value would be an allocation per body.
	Flush interface{ Flush() error }
	// Read counts body bytes read from the source, framing included.
	Read int64
}

// flushIfDry flushes the destination when the source has nothing
// buffered, so what was written is not held back while ferry waits.
func (c *Copier) flushIfDry(src *bufio.Reader) error {
	if c.Flush == nil || src.Buffered() > 0 {
		return nil
	}
	if err := c.Flush.Flush(); err != nil {
		return &WriteError{Err: err}
	}
	return nil
}

// ErrChunk is malformed chunked framing.
var ErrChunk = errors.New("malformed chunked body")

// Copy copies one body framed by fr from src to dst. It returns when the
// body ended (for Close, at the source's EOF, which is then nil).
func (c *Copier) Copy(dst io.Writer, src *bufio.Reader, fr Framing) error {
	switch fr.Kind {
	case Length:
		return c.copyN(dst, src, fr.Length)
	case Chunked:
		return c.copyChunked(dst, src)
	case Close:
		if err := c.copyN(dst, src, 1<<62); err != io.ErrUnexpectedEOF {
			return err
		}
	}
	return nil
}

// copyN copies n bytes, writing each read as soon as it arrives so a
// streamed body is not held back; EOF first is io.ErrUnexpectedEOF.
func (c *Copier) copyN(dst io.Writer, src *bufio.Reader, n int64) error {
	for n > 0 {
		var p []byte
		if k := src.Buffered(); k > 0 {
			p, _ = src.Peek(int(min(int64(k), n)))
			src.Discard(len(p))
		} else {
			if err := c.flushIfDry(src); err != nil {
				return err
			}
			m, err := src.Read(c.Buf[:min(int64(len(c.Buf)), n)])
			if m == 0 && err != nil {
				if err == io.EOF {
					return io.ErrUnexpectedEOF
				}
				return err
			}
			p = c.Buf[:m]
		}
		c.Read += int64(len(p))
		n -= int64(len(p))
		if _, err := dst.Write(p); err != nil {
			return &WriteError{Err: err}
		}
	}
	return nil
}

// WriteError is a failure writing to the destination, told apart from
// the source's failures.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "write: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// copyChunked passes chunked framing through after checking it (RFC 9112
// section 7.1): CRLF line ends only, hex sizes, bounded extensions and
// trailers, so both ends agree where the body ends.
func (c *Copier) copyChunked(dst io.Writer, src *bufio.Reader) error {
	var line []byte
	for {
		var err error
		line, err = c.readChunkLine(src, line[:0])
		if err != nil {
			return err
		}
		size, err := chunkSize(line)
		if err != nil {
			return err
		}
		if !c.Dechunk {
			if _, err := dst.Write(line); err != nil {
				return &WriteError{Err: err}
			}
		}
		if size == 0 {
			return c.copyTrailers(dst, src, line[:0])
		}
		if err := c.copyN(dst, src, size); err != nil {
			return err
		}
		line, err = c.readChunkLine(src, line[:0])
		if err != nil {
			return err
		}
		if len(line) != 2 {
			return errors.Join(ErrChunk, errors.New("chunk data not followed by CRLF"))
		}
		if !c.Dechunk {
			if _, err := dst.Write(line); err != nil {
				return &WriteError{Err: err}
			}
		}
	}
}

// readChunkLine reads one CRLF-ended line of chunk framing.
func (c *Copier) readChunkLine(src *bufio.Reader, buf []byte) ([]byte, error) {
	limit := 4096
	if c.Limits.MaxBytes > 0 {
		limit = min(limit, c.Limits.MaxBytes)
	}
	if err := c.flushIfDry(src); err != nil {
		return buf, err
	}
	n := len(buf)
	buf, err := readLine(src, buf, limit)
	c.Read += int64(len(buf) - n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == ErrTooLarge {
			err = errors.Join(ErrChunk, errors.New("chunk line too long"))
		}
		return buf, err
	}
	l := buf[n:]
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return buf, errors.Join(ErrChunk, errors.New("bare LF in chunked framing"))
	}
	return buf, nil
}

// chunkSize parses chunk-size [ chunk-ext ] CRLF.
func chunkSize(line []byte) (int64, error) {
	l := line[:len(line)-2]
	var n int64
	i := 0
	for ; i < len(l); i++ {
		d := unhex(l[i])
		if d < 0 {
			break
		}
		if i >= 15 {
			return 0, errors.Join(ErrChunk, errors.New("chunk size too large"))
		}
		n = n<<4 | int64(d)
	}
	if i == 0 {
		return 0, errors.Join(ErrChunk, errors.New("no chunk size"))
	}
	for _, c := range l[i:] {
		// chunk-ext: BWS ; name [= value], no control bytes.
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, errors.Join(ErrChunk, errors.New("control byte in chunk extension"))
		}
	}
	if rest := strings.TrimLeft(string(l[i:]), " \t"); rest != "" && rest[0] != ';' {
		return 0, errors.Join(ErrChunk, errors.New("invalid chunk size"))
	}
	return n, nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// copyTrailers passes the trailer section and the final CRLF on.
func (c *Copier) copyTrailers(dst io.Writer, src *bufio.Reader, buf []byte) error {
	fields := 0
	total := 0
	for {
		line, err := c.readChunkLine(src, buf[:0])
		if err != nil {
			return err
		}
		total += len(line)
		if c.Limits.MaxBytes > 0 && total > c.Limits.MaxBytes {
			return errors.Join(ErrChunk, ErrTooLarge)
		}
		if len(line) > 2 {
			if fields++; c.Limits.MaxFields > 0 && fields > c.Limits.MaxFields {
				return errors.Join(ErrChunk, ErrTooManyFields)
			}
			if _, err := parseField(string(line), 0, len(line)-2); err != nil {
				return errors.Join(ErrChunk, err)
			}
		}
		if !c.Dechunk {
			if _, err := dst.Write(line); err != nil {
				return &WriteError{Err: err}
			}
		}
		if len(line) == 2 {
			return nil
		}
	}
}
