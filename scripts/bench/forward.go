package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// runForward is `bench forward`: the least a Go forwarder with one
// goroutine per direction costs. It is a reference for the new-tunnel
// and idle figures, not a peer users would run: it accepts with
// net.Listen, dials with net.Dial and copies with io.Copy (which splices
// on Linux), with no handshake, limits, logging or timeouts, so ferry's
// distance to it is what ferry's own work costs, and its distance to
// haproxy is what Go's net package and scheduler cost.
func runForward(args []string) int {
	fs := flag.NewFlagSet("bench forward", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to listen on")
	target := fs.String("target", "", "address every connection is forwarded to")
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
		go forwardOne(c.(*net.TCPConn), *target)
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
