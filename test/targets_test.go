//go:build linux

package test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"net"
	"time"
)

// stream is a deterministic pseudo-random byte stream: the AES-CTR key
// stream of a key derived from seed. It is fast enough (assembly) that
// 64 MiB costs little even under the race detector.
type stream struct {
	ctr  cipher.Stream
	left int64
}

func newStream(seed uint64, n int64) *stream {
	var key [16]byte
	binary.BigEndian.PutUint64(key[:], seed)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err)
	}
	return &stream{ctr: cipher.NewCTR(block, make([]byte, aes.BlockSize)), left: n}
}

func (s *stream) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	clear(p)
	s.ctr.XORKeyStream(p, p)
	s.left -= int64(len(p))
	return len(p), nil
}

// digest is a byte count and SHA-256 of one direction of a transfer.
type digest struct {
	n   int64
	sum [32]byte
}

func (d digest) String() string { return fmt.Sprintf("%d bytes sha256 %x", d.n, d.sum[:8]) }

func finish(h hash.Hash, n int64) digest {
	var d digest
	d.n = n
	copy(d.sum[:], h.Sum(nil))
	return d
}

// send writes n bytes of the stream for seed to w and returns their
// digest; the digest covers what was written even on error.
func send(w io.Writer, seed uint64, n int64) (digest, error) {
	h := sha256.New()
	m, err := io.CopyBuffer(io.MultiWriter(w, h), newStream(seed, n), make([]byte, 256<<10))
	return finish(h, m), err
}

// receive reads r to EOF and returns the digest of what it read.
func receive(r io.Reader) (digest, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 256<<10))
	return finish(h, n), err
}

// deadlineAfter sets an overall deadline on c that bounds a test's I/O.
func deadlineAfter(c net.Conn, d time.Duration) {
	c.SetDeadline(time.Now().Add(d))
}
