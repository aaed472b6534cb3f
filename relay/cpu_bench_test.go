//go:build linux

package relay

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/plugins"
	"ferry/test/testkit"
)

// BenchmarkRelayCPU measures what the relay alone costs per byte: the
// clients and the target run in a child process (this test binary,
// re-run as benchPeer), so this process's CPU time (getrusage, user and
// system) is the channels', the runtime's and the kernel's work on their
// behalf. It reports cpu-s/GB, the figure scripts/bench.sh compares, for
// the spliced fast path and the hooked copy (a no-op OnRead and OnWrite,
// which turns splice off) as a listener runs it by default (reads of
// buffer_size growing to max_buffer_size during a bulk transfer), and
// with fixed 128 KiB reads, each way, with 1 and 8 streams. One op is
// one MiB across all streams; give it a count:
//
//	go test -run '^$' -bench RelayCPU -benchtime 2048x ./relay/
//
// Wall-clock MB/s depends on the peer process sharing the machine; the
// CPU figure and the ratio of hooked to fast do not.
func BenchmarkRelayCPU(b *testing.B) {
	hook := []plugins.Plugin{passthrough{}}
	for _, path := range []struct {
		name string
		ps   []plugins.Plugin
		bufs *BufferPool
	}{
		{"fast", nil, NewBufferPool(0)},
		{"hooked", hook, NewGrowingPool(DefaultBufferSize, DefaultMaxBufferSize)},
		{"hooked-fixed-128KiB", hook, NewBufferPool(128 << 10)},
	} {
		for _, dir := range []string{"up", "down"} {
			for _, streams := range []int{1, 8} {
				name := fmt.Sprintf("%s/%s/streams=%d", path.name, dir, streams)
				b.Run(name, func(b *testing.B) {
					runRelayCPU(b, plugins.NewChain(path.ps), path.bufs, dir, streams)
				})
			}
		}
	}
}

const benchOp = 1 << 20 // bytes per op

func runRelayCPU(b *testing.B, chain *plugins.Chain, bufs *BufferPool, dir string, streams int) {
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer front.Close()
	targetLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	target := targetLn.Addr().String()
	targetFile, err := targetLn.(*net.TCPListener).File()
	targetLn.Close()
	if err != nil {
		b.Fatal(err)
	}
	per := int64(b.N) * benchOp / int64(streams)
	peer := exec.Command(os.Args[0], "-test.run=^$")
	peer.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %s", benchPeerEnv, dir, streams, per, front.Addr()))
	peer.ExtraFiles = []*os.File{targetFile}
	peer.Stderr = os.Stderr
	out := &strings.Builder{}
	peer.Stdout = out
	b.SetBytes(benchOp)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	if err := peer.Start(); err != nil {
		b.Fatal(err)
	}
	targetFile.Close()
	relayStreams(b, front, target, chain, bufs, streams)
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	if err := peer.Wait(); err != nil {
		b.Fatalf("peer: %v", err)
	}
	if got, want := strings.TrimSpace(out.String()), strconv.FormatInt(per*int64(streams), 10); got != want {
		b.Fatalf("peer received %s bytes, want %s", got, want)
	}
	b.ReportMetric(cpu.Seconds()/(float64(b.N)*benchOp/1e9), "cpu-s/GB")
}

// relayStreams accepts streams clients on front, joins each to the
// peer's target through a Channel, and returns when all have ended.
func relayStreams(b *testing.B, front net.Listener, target string, chain *plugins.Chain, bufs *BufferPool, streams int) {
	var wg sync.WaitGroup
	defer wg.Wait()
	front.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	for range streams {
		c, err := front.Accept()
		if err != nil {
			b.Error(err)
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			b.Error(err)
			return
		}
		ch := &Channel{Client: c, Upstream: up, Session: &plugins.Session{}, Chain: chain, Buffers: bufs}
		wg.Go(func() { ch.Run(context.Background()) })
	}
}

func processCPU(b *testing.B) time.Duration {
	d, err := testkit.CPUTime(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	return d
}

const benchPeerEnv = "FERRY_RELAY_BENCH_PEER"

// benchPeer is the other process of BenchmarkRelayCPU, run when
// benchPeerEnv is set to "DIR STREAMS BYTES FRONT": it dials STREAMS
// clients to FRONT, accepts as many target connections on the listener
// it inherits (descriptor 3), sends BYTES on each stream the way DIR
// says, and prints the bytes the receiving ends got.
func benchPeer(spec string) error {
	var dir, front string
	var streams int
	var per int64
	if _, err := fmt.Sscan(spec, &dir, &streams, &per, &front); err != nil {
		return fmt.Errorf("peer spec %q: %w", spec, err)
	}
	ln, err := net.FileListener(os.NewFile(3, "target"))
	if err != nil {
		return fmt.Errorf("target listener: %w", err)
	}
	defer ln.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	var got sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, 2*streams)
	for i := range streams {
		c, err := net.Dial("tcp", front)
		if err != nil {
			return err
		}
		t, err := ln.Accept()
		if err != nil {
			return err
		}
		src, dst := c, t
		if dir == "down" {
			src, dst = t, c
		}
		wg.Go(func() { errs <- benchSend(src, per) })
		wg.Go(func() {
			n, err := io.Copy(io.Discard, dst)
			got.Store(i, n)
			dst.Close()
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	var total int64
	got.Range(func(_, v any) bool { total += v.(int64); return true })
	fmt.Println(total)
	return nil
}

// benchSend writes n bytes to c in large writes, then half-closes it
// and waits for the far end to close.
func benchSend(c net.Conn, n int64) error {
	buf := make([]byte, 256<<10)
	for n > 0 {
		m, err := c.Write(buf[:min(int64(len(buf)), n)])
		if err != nil {
			return err
		}
		n -= int64(m)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, c)
	c.Close()
	return err
}
