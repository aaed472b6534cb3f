package httphead

import (
	"bufio"
	"errors"
	"io"
)

// BodyReader reads one body framed by fr from src without its framing:
// chunk sizes, extensions and trailers are checked as Copier checks
// them and removed. It reads only as the caller reads, in the caller's
// goroutine, and never past the body's end.
type BodyReader struct {
	src  *bufio.Reader
	kind Kind
	// left is what remains of a Length body or of the current chunk.
	left int64
	c    Copier
	line []byte
	// chunks counts the chunks begun: after the first, a chunk's data
	// ends in CRLF.
	chunks int
	err    error
}

// NewBodyReader returns a BodyReader of the body fr frames in src; lim
// bounds chunk lines and trailers.
func NewBodyReader(src *bufio.Reader, fr Framing, lim Limits) *BodyReader {
	r := &BodyReader{src: src, kind: fr.Kind, c: Copier{Dechunk: true, Limits: lim}}
	if fr.Kind == Length {
		r.left = fr.Length
	}
	if fr.Kind == None {
		r.err = io.EOF
	}
	return r
}

// Done reports whether the whole body was read, so the connection is at
// the next message.
func (r *BodyReader) Done() bool { return r.err == io.EOF }

func (r *BodyReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	switch r.kind {
	case Close:
		n, err := r.src.Read(p)
		r.err = err
		return n, err
	case Chunked:
		if r.left == 0 {
			if r.err = r.nextChunk(); r.err != nil {
				return 0, r.err
			}
		}
	}
	if r.left == 0 {
		r.err = io.EOF
		return 0, io.EOF
	}
	n, err := r.src.Read(p[:min(int64(len(p)), r.left)])
	r.left -= int64(n)
	switch {
	case err == io.EOF:
		r.err = io.ErrUnexpectedEOF
	case err != nil:
		r.err = err
	case r.kind == Length && r.left == 0:
		r.err = io.EOF
	}
	if n > 0 && r.err != nil && r.err != io.EOF {
		return n, nil // the error comes with the next Read
	}
	return n, r.err
}

// nextChunk reads the CRLF that ends the chunk before, then the next
// chunk-size line; the last chunk's trailers are read and dropped, and
// the body ends (left stays 0).
func (r *BodyReader) nextChunk() error {
	var err error
	if r.chunks > 0 {
		if r.line, err = r.c.readChunkLine(r.src, r.line[:0]); err != nil {
			return err
		}
		if len(r.line) != 2 {
			return errors.Join(ErrChunk, errors.New("chunk data not followed by CRLF"))
		}
	}
	r.chunks++
	if r.line, err = r.c.readChunkLine(r.src, r.line[:0]); err != nil {
		return err
	}
	size, err := chunkSize(r.line)
	if err != nil {
		return err
	}
	if size == 0 {
		return r.c.copyTrailers(io.Discard, r.src, r.line[:0])
	}
	r.left = size
	return nil
}
