package test

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// targetBody is what the HTTP targets answer.
const targetBody = "hello from the ferry e2e target\n"

// newHTTPTarget starts a plain HTTP server on 127.0.0.1 that answers every
// request with targetBody.
func newHTTPTarget(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, targetBody)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// newTLSTarget starts an HTTPS server on 127.0.0.1 answering targetBody
// and writes its certificate (self-signed, valid for 127.0.0.1) as PEM to
// a file for curl --cacert.
func newTLSTarget(t *testing.T) (srv *httptest.Server, caFile string) {
	t.Helper()
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, targetBody)
	}))
	// Handshake errors (none are expected) would go to the test log.
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

// tcpTarget is a TCP server on 127.0.0.1 that runs handle for each
// connection. Its cleanup closes the listener and waits for the handlers,
// which must end by themselves (tests bound them with deadlines).
type tcpTarget struct {
	ln   net.Listener
	addr string
	wg   sync.WaitGroup
}

func newTCPTarget(t *testing.T, handle func(c *net.TCPConn)) *tcpTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tt := &tcpTarget{ln: ln, addr: ln.Addr().String()}
	tt.wg.Add(1)
	go func() {
		defer tt.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tt.wg.Add(1)
			go func() {
				defer tt.wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		tt.wg.Wait()
	})
	return tt
}

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

// bufConn is a TCP connection whose reads go through the reader that read
// its proxy handshake, so bytes that arrived with the reply are not lost.
// CloseWrite still reaches the socket.
type bufConn struct {
	*net.TCPConn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// WriteTo hides the embedded TCPConn's WriteTo, which io.Copy would use
// and which would skip the buffered bytes.
func (c *bufConn) WriteTo(w io.Writer) (int64, error) { return c.r.WriteTo(w) }

// deadlineAfter sets an overall deadline on c that bounds a test's I/O.
func deadlineAfter(c net.Conn, d time.Duration) {
	c.SetDeadline(time.Now().Add(d))
}
