package upstream

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// readHead reads the proxy's response head. On a plain TCP connection
// (plain: no TLS in between) it reads exactly the head and nothing past
// it, so rest is empty and the connection stays the raw socket; anything
// else is read through a buffer, and rest is what came after the head.
func readHead(c net.Conn, plain bool) (head, rest []byte, err error) {
	if rc, ok := c.(syscall.Conn); ok && plain {
		head, err = readHeadExact(rc)
		return head, nil, err
	}
	return readHeadBuffered(c)
}

// readHeadExact reads an HTTP response head from a socket without
// consuming a byte past it: it peeks at what has arrived, and reads for
// real only the bytes known to belong to the head.
func readHeadExact(c syscall.Conn) ([]byte, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	head := make([]byte, 0, 512)
	buf := make([]byte, 4096)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, io.ErrUnexpectedEOF
		}
		// The head ends in what was peeked, or all of it belongs to the
		// head: take it and wait for more.
		take := n
		joined := append(head[max(0, len(head)-3):len(head):len(head)], buf[:n]...)
		if i := bytes.Index(joined, headEnd); i >= 0 {
			take = i + len(headEnd) - min(3, len(head))
		}
		if len(head)+take > maxResponseHead {
			return nil, fmt.Errorf("response head over %d bytes", maxResponseHead)
		}
		m, err := readFull(rc, buf[:take])
		head = append(head, buf[:m]...)
		if err != nil {
			return nil, err
		}
		if take < n || bytes.HasSuffix(head, headEnd) {
			return head, nil
		}
	}
}

// readFull reads exactly len(b) bytes the peek saw, through the poller
// (so deadlines hold).
func readFull(rc syscall.RawConn, b []byte) (int, error) {
	got := 0
	for got < len(b) {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), b[got:])
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return got, err
		}
		if n == 0 {
			return got, io.ErrUnexpectedEOF
		}
		got += n
	}
	return got, nil
}
