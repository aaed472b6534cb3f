package server

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"ferry/test/testkit"
)

// BenchmarkIdleTunnel opens b.N CONNECT tunnels through a started
// server, echoes a byte through each, and holds them idle until every
// copy has parked; it reports the process's heap and goroutines per
// tunnel then (after a GC): what an idle tunnel holds, ferry's side and
// the two loopback ends of the benchmark (whose share is a few hundred
// bytes: two sockets and a 64-byte echo buffer). With FERRY_IDLE_HEAP
// set to a file name, it writes a heap profile there while the tunnels
// are open; run with -memprofilerate 1 for every allocation:
//
//	FERRY_IDLE_HEAP=/tmp/idle.pb go test -run '^$' -bench IdleTunnel \
//		-benchtime 2000x -memprofilerate 1 ./server/
func BenchmarkIdleTunnel(b *testing.B) {
	echo := testkit.NewTCPTarget(b, func(c *net.TCPConn) {
		var buf [64]byte
		for {
			n, err := c.Read(buf[:])
			if err != nil {
				c.CloseWrite()
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}).Addr
	srv := startBench(b, benchTunnelConfig)
	addr := srv.Addrs()[0].String()
	req := []byte(fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", echo, echo))
	before := idleSnapshot()
	conns := make([]net.Conn, 0, b.N)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range b.N {
		c, err := idleOpen(addr, req)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitParkedB(b, srv, int64(2*b.N))
	after := idleSnapshot()
	n := float64(b.N)
	b.ReportMetric(float64(after.heap-before.heap)/n, "heap-B/tunnel")
	b.ReportMetric(float64(after.stack-before.stack)/n, "stack-B/tunnel")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/tunnel")
	if name := os.Getenv("FERRY_IDLE_HEAP"); name != "" {
		writeHeapProfile(b, name)
	}
}

type idleMem struct {
	heap, stack uint64
	goroutines  int
}

func idleSnapshot() idleMem {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return idleMem{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// idleOpen opens a tunnel and echoes a byte through it.
func idleOpen(addr string, req []byte) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var buf [64]byte
	reply := len("HTTP/1.1 200 Connection established\r\n\r\n")
	_, err = c.Write(req)
	if err == nil {
		_, err = io.ReadFull(c, buf[:reply])
	}
	if err == nil {
		_, err = c.Write([]byte{'x'})
	}
	if err == nil {
		_, err = io.ReadFull(c, buf[:1])
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("open tunnel: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// waitParkedB waits, for at most 10 s, until n copies have parked.
func waitParkedB(b *testing.B, srv *Server, n int64) {
	deadline := time.Now().Add(10 * time.Second)
	for srv.parker.Parked() < n {
		if time.Now().After(deadline) {
			b.Fatalf("parked copies: %d, want %d", srv.parker.Parked(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeHeapProfile(b *testing.B, name string) {
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}
