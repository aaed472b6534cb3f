package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// runForward is `bench forward`: the least a Go forwarder with one
// goroutine per direction costs. It is a reference for the new-tunnel,
// idle and plain HTTP figures, not a peer users would run: it accepts
// with net.Listen, dials with net.Dial and copies with io.Copy (which
// splices on Linux), with no handshake, limits, logging or timeouts, so
// ferry's distance to it is what ferry's own work costs, and its
// distance to haproxy is what Go's net package and scheduler cost. With
// -http it relays keep-alive HTTP/1.1 exchanges instead (forwardHTTP).
func runForward(args []string) int {
	fs := flag.NewFlagSet("bench forward", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to listen on")
	target := fs.String("target", "", "address every connection is forwarded to")
	http := fs.Bool("http", false, "relay keep-alive HTTP/1.1 GETs one exchange at a time (bench -mode http)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *listen == "" || *target == "" {
		fmt.Fprintln(os.Stderr, "bench forward: -listen and -target are required")
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench forward: %v\n", err)
		return 1
	}
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return 1
		}
		if err != nil {
			// Out of descriptors or an aborted connection: a later
			// accept may do, after a pause so as not to spin.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if *http {
			go forwardHTTP(c, *target)
		} else {
			go forwardOne(c.(*net.TCPConn), *target)
		}
	}
}

// forwardOne relays c to a new connection to target until both
// directions end, passing each end of stream on as a half close.
func forwardOne(c *net.TCPConn, target string) {
	defer c.Close()
	u, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	t := u.(*net.TCPConn)
	defer t.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(t, c)
		t.CloseWrite()
	}()
	io.Copy(c, t)
	c.CloseWrite()
	wg.Wait()
}

// forwardHTTP relays keep-alive exchanges from c over one connection to
// target, one at a time: each request head goes on as it came (absolute
// form included, which origin servers accept: RFC 9112 section 3.2.2),
// each response head and its Content-Length body come back in one
// write. Nothing else is parsed, so it handles only what bench -mode
// http sends: GETs without bodies, answered with a Content-Length.
func forwardHTTP(c net.Conn, target string) {
	defer c.Close()
	u, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer u.Close()
	cr, ur := bufio.NewReader(c), bufio.NewReaderSize(u, 64<<10)
	var req, resp []byte
	for {
		if req, err = readHead(cr, req[:0]); err != nil {
			return
		}
		if _, err = u.Write(req); err != nil {
			return
		}
		if resp, err = readHead(ur, resp[:0]); err != nil {
			return
		}
		n, ok := contentLength(resp)
		if !ok {
			return
		}
		head := len(resp)
		resp = slices.Grow(resp, n)[:head+n]
		if _, err = io.ReadFull(ur, resp[head:]); err != nil {
			return
		}
		if _, err = c.Write(resp); err != nil {
			return
		}
	}
}

// readHead appends to buf the lines of r up to and including the empty
// line that ends an HTTP head; at most 64 KiB.
func readHead(r *bufio.Reader, buf []byte) ([]byte, error) {
	for len(buf) < 64<<10 {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return buf, err
		}
		buf = append(buf, line...)
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return buf, nil
		}
	}
	return buf, errors.New("head too long")
}

// contentLength finds the Content-Length field of a response head.
func contentLength(head []byte) (int, bool) {
	for rest := head; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			return n, err == nil && n >= 0 && n <= 1<<30
		}
	}
	return 0, false
}
