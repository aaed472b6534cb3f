package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"ferry/scripts/internal/load"
	"ferry/test/testkit"
)

// The udp mode: datagrams through one SOCKS5 UDP association (RFC 1928
// §7) to the tool's own UDP echo server. The tool keeps -concurrency
// datagrams in flight (a window: each echo lets one more go), of random
// sizes from 1 to udpMaxPayload bytes, for -duration (or -count round
// trips). Every datagram crosses the proxy twice (out and echoed back):
// the figures count both. A window that gets no echo within udpLossWait
// is counted lost and sent again, so a lossy proxy is slower, not stuck.

const (
	udpMaxPayload = 1400
	udpLossWait   = 200 * time.Millisecond
	udpWarmup     = 200
)

// udpLoad runs the udp mode.
func (b *bench) udpLoad() *Result {
	r := &Result{Concurrency: b.cfg.conc}
	if b.cfg.proto != "socks5" {
		r.fail(fmt.Errorf("udp mode: -proto %q, want socks5", b.cfg.proto))
		return r
	}
	echo, err := testkit.UDPEcho(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		r.fail(err)
		return r
	}
	defer echo.Close()
	a, err := b.associate()
	if err != nil {
		r.fail(fmt.Errorf("udp associate: %w", err))
		return r
	}
	defer a.close()
	w := newUDPWindow(a, echo.LocalAddr().(*net.UDPAddr).AddrPort(), b.cfg.conc)
	if _, err := w.run(udpWarmup, time.Now().Add(b.cfg.timeout)); err != nil {
		r.fail(fmt.Errorf("warm-up: %w", err))
		return r
	}
	time.Sleep(b.cfg.settle)
	m := b.start()
	end := m.t.Add(min(b.cfg.duration, b.cfg.timeout))
	rounds := int64(1 << 40)
	if b.cfg.count > 0 {
		rounds = b.cfg.count
	}
	n, err := w.run(rounds, end)
	if err != nil {
		r.fail(err)
	}
	elapsed := time.Since(m.t)
	b.stop(m, elapsed, r)
	r.Datagrams, r.Lost, r.Bytes = 2*n, w.lost, 2*w.bytes
	if r.Seconds > 0 {
		r.DgramsPerSec = float64(r.Datagrams) / r.Seconds
		r.MBps = float64(r.Bytes) / 1e6 / r.Seconds
	}
	if r.Datagrams > 0 && b.cfg.pid > 0 {
		r.CPUUsPerDgram = r.CPUSec * 1e6 / float64(r.Datagrams)
	}
	return r
}

// udpAssoc is the tool's association: the control connection, the relay
// and the tool's socket.
type udpAssoc struct {
	ctl   net.Conn
	conn  *net.UDPConn
	relay netip.AddrPort
}

func (a *udpAssoc) close() {
	a.ctl.Close()
	a.conn.Close()
}

// associate opens an association at the proxy for a socket of the tool.
func (b *bench) associate() (*udpAssoc, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(4 << 20)
	ctl, err := net.DialTimeout("tcp", b.cfg.proxy, b.cfg.dialTO)
	if err != nil {
		conn.Close()
		return nil, err
	}
	ctl.SetDeadline(time.Now().Add(b.cfg.dialTO))
	relay, err := load.SOCKS5UDP(ctl, conn.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		conn.Close()
		ctl.Close()
		return nil, err
	}
	ctl.SetDeadline(time.Time{})
	return &udpAssoc{ctl: ctl, conn: conn, relay: relay}, nil
}

// udpWindow sends datagrams through an association, window at a time.
type udpWindow struct {
	a        *udpAssoc
	out, in  []byte // a datagram with its header; a read buffer
	hdr      int
	window   int
	rng      *rand.Rand
	lost     int64
	bytes    int64 // payload bytes echoed
	inFlight int
}

func newUDPWindow(a *udpAssoc, echo netip.AddrPort, window int) *udpWindow {
	a4 := echo.Addr().As4()
	out := append([]byte{0, 0, 0, 1}, a4[:]...)
	out = binary.BigEndian.AppendUint16(out, echo.Port())
	hdr := len(out)
	out = append(out, make([]byte, udpMaxPayload)...)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := hdr; i < len(out); i++ {
		out[i] = byte(rng.Uint32())
	}
	return &udpWindow{a: a, out: out, in: make([]byte, 65535), hdr: hdr, window: window, rng: rng}
}

// run completes rounds round trips, or as many as fit before end, and
// returns how many it completed.
func (w *udpWindow) run(rounds int64, end time.Time) (int64, error) {
	var done int64
	for done < rounds && time.Now().Before(end) {
		for w.inFlight < w.window && done+int64(w.inFlight) < rounds {
			size := 1 + w.rng.IntN(udpMaxPayload)
			if _, err := w.a.conn.WriteToUDPAddrPort(w.out[:w.hdr+size], w.a.relay); err != nil {
				return done, fmt.Errorf("send: %w", err)
			}
			w.inFlight++
		}
		w.a.conn.SetReadDeadline(time.Now().Add(udpLossWait))
		n, _, err := w.a.conn.ReadFromUDPAddrPort(w.in)
		if isTimeout(err) {
			w.lost += int64(w.inFlight)
			w.inFlight = 0
			continue
		}
		if err != nil && err != io.EOF {
			return done, fmt.Errorf("receive: %w", err)
		}
		w.inFlight--
		done++
		// The echo's header is 10 bytes for the IPv4 echo server.
		w.bytes += int64(max(0, n-w.hdr))
	}
	return done, nil
}

// writeUDPTables writes the SOCKS5 UDP ASSOCIATE figures of the udp mode.
func (rs *results) writeUDPTables(w io.Writer) {
	get := rs.modeValue
	window := 0
	for _, r := range rs.all {
		if r.Mode == "udp" {
			window = max(window, r.Concurrency)
		}
	}
	rate := get("udp", func(r *Result) float64 { return r.DgramsPerSec })
	rs.table(w, "SOCKS5 UDP: datagrams per second", fmt.Sprintf("One association, the tool's own UDP echo server behind it, %d datagrams in flight of 1 to %d bytes (random sizes); each datagram is counted out and echoed back, two per round trip. Higher is better.", window, udpMaxPayload),
		[]column{{"datagrams/s", rate}, {"MB/s", get("udp", func(r *Result) float64 { return r.MBps })},
			{"lost", get("udp", func(r *Result) float64 { return float64(r.Lost) })}}, rate)
	per := get("udp", func(r *Result) float64 { return r.CPUUsPerDgram })
	rs.table(w, "SOCKS5 UDP: CPU per datagram", "Proxy CPU-microseconds per datagram relayed in the run above (header checked and stripped or added, destination looked up, one receive and one send). Lower is better.",
		[]column{{"CPU-us/datagram", per}, {"proxy CPU %", get("udp", func(r *Result) float64 { return r.ProxyCPU })}}, per)
}
