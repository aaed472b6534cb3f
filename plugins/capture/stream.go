package capture

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"ferry/plugins"
)

// side is one end of a synthetic connection.
type side int

const (
	fromClient side = 0
	fromTarget side = 1
)

func (d side) other() side { return 1 - d }

// stream is the synthetic TCP connection of one channel. The file
// service's mutex guards it: every method runs with that lock held.
type stream struct {
	ends  [2]netip.AddrPort // client, target; same address family
	next  [2]uint32         // next sequence number each end sends
	ipID  [2]uint16         // next IPv4 identification each end sends
	id    string
	intro string // names the channel; the first packet in each file carries it
	gen   uint64 // file generation whose packets already carry intro

	opened, closed bool
	fin            [2]bool // each end's FIN is written
	lastFIN        side    // the end whose FIN came last
	// heldEnd: a plain HTTP request that asks to upgrade has ended; its
	// FIN waits for the response. upgraded: a 101 response made the
	// session a tunnel, whose ends are the streams' own.
	heldEnd, upgraded bool
	seen              [2]int64 // data bytes that passed each way
	recorded          int64    // data bytes written, both ways
	late              int64    // data bytes that came after their end's FIN
}

// newStream derives the addresses of s's synthetic connection. The client
// is s.Client; the target is s.Target when its host is an IP address, else
// the address ferry connected to (s.UpstreamAddr, see dialedAddr), else a
// stable address made from the name, in 198.18.0.0/15 (IPv4) or
// 2001:2::/48 (IPv6), the ranges reserved for benchmarks that no real
// host uses. When the two families differ, the IPv4 side is written as an
// IPv4-mapped IPv6 address.
func newStream(s *plugins.Session) *stream {
	h := fnv.New64a()
	h.Write([]byte(s.ID))
	x := h.Sum64()
	st := &stream{
		id:   s.ID,
		next: [2]uint32{uint32(x), uint32(x >> 32)},
		ipID: [2]uint16{uint16(x >> 8), uint16(x >> 40)},
	}

	client, clientKnown := addrPortOf(s.Client)
	if !clientKnown {
		client = netip.AddrPortFrom(fakeAddr("client "+s.ID, false), uint16(49152+x%16384))
	}
	host, portStr, err := net.SplitHostPort(s.Target)
	if err != nil {
		host = s.Target
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	ip, err := netip.ParseAddr(host)
	named := err != nil
	dialed, known := dialedAddr(s, uint16(port))
	switch {
	case named && known:
		ip = dialed.Addr()
	case named:
		ip = fakeAddr(host, !client.Addr().Is4())
	}
	ip = ip.Unmap().WithZone("")
	if client.Addr().Is4() != ip.Is4() {
		client = netip.AddrPortFrom(netip.AddrFrom16(client.Addr().As16()), client.Port())
		ip = netip.AddrFrom16(ip.As16())
	}
	target := netip.AddrPortFrom(ip, uint16(port))
	st.ends = [2]netip.AddrPort{client, target}

	var b strings.Builder
	fmt.Fprintf(&b, "ferry channel %s, listener %s, %s: client %s", s.ID, s.Listener, s.Protocol, addrString(s.Client))
	if s.User != "" {
		fmt.Fprintf(&b, " (user %s)", s.User)
	}
	fmt.Fprintf(&b, ", target %s", s.Target)
	switch {
	case named && known:
		fmt.Fprintf(&b, " (connected to %s)", dialed)
	case named:
		fmt.Fprintf(&b, " (a name: shown as %s)", target)
	}
	if !clientKnown {
		fmt.Fprintf(&b, "; client shown as %s", client)
	}
	st.intro = commentText(b.String())
	return st
}

// dialedAddr is the address ferry connected to for s when that is the
// target itself. A dial through an upstream proxy reaches the proxy: when
// s went through upstream proxies (UpstreamPath), or the connection went to another port than the
// target's, the address is not the target's.
func dialedAddr(s *plugins.Session, port uint16) (netip.AddrPort, bool) {
	if s.UpstreamAddr == nil || s.UpstreamPath != "" {
		return netip.AddrPort{}, false
	}
	ap, ok := addrPortOf(s.UpstreamAddr)
	if !ok || ap.Port() != port {
		return netip.AddrPort{}, false
	}
	return ap, true
}

// maxComment bounds a packet comment: a CONNECT target or an error text
// can be long, and an option's length is 16 bits.
const maxComment = 1024

// commentText makes s a valid pcapng comment: UTF-8, at most maxComment
// bytes.
func commentText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxComment {
		return s
	}
	cut := maxComment - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// addrPortOf returns a's IP and port, with IPv4-mapped addresses unmapped
// and zones dropped; ok is false when a carries no IP.
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		if !ap.Addr().IsValid() {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), true
	case nil:
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), true
}

func addrString(a net.Addr) string {
	if a == nil {
		return "unknown"
	}
	return a.String()
}

// fakeAddr returns a stable address for name from the benchmarking ranges:
// 198.18.0.0/15 for IPv4, 2001:2::/48 for IPv6.
func fakeAddr(name string, v6 bool) netip.Addr {
	h := fnv.New64a()
	h.Write([]byte(name))
	x := h.Sum64()
	if !v6 {
		return netip.AddrFrom4([4]byte{198, 18 | byte(x>>16)&1, byte(x >> 8), byte(x)})
	}
	a := [16]byte{0x20, 0x01, 0x00, 0x02}
	be.PutUint64(a[8:], x)
	return netip.AddrFrom16(a)
}

// send writes one segment from end d: its sequence number is d's next,
// its acknowledgment everything the other end sent so far.
func (st *stream) send(f *fileService, ts time.Time, d side, flags byte, opts, payload []byte, comments []string) {
	seg := segment{
		src: st.ends[d], dst: st.ends[d.other()],
		seq: st.next[d], flags: flags, opts: opts, ipID: st.ipID[d],
	}
	if flags&flagACK != 0 {
		seg.ack = st.next[d.other()]
	}
	f.writePacket(st, ts, seg.headers(payload), payload, comments)
	st.ipID[d]++
	st.next[d] += uint32(len(payload))
	if flags&(flagSYN|flagFIN) != 0 {
		st.next[d]++
	}
}

// open writes the three-way handshake, once.
func (st *stream) open(f *fileService, ts time.Time) {
	if st.opened {
		return
	}
	st.opened = true
	st.send(f, ts, fromClient, flagSYN, synOptions, nil, nil)
	st.send(f, ts, fromTarget, flagSYN|flagACK, synOptions, nil, nil)
	st.send(f, ts, fromClient, flagACK, nil, nil, nil)
}

// data writes a chunk sent by end d as segments of at most maxSegment
// bytes, the last one with PSH, and the other end's acknowledgment. Past
// limit bytes recorded (both ways together; 0: no limit) data is not
// written, but the sequence numbers still count it, so the readers see
// the gap. Data after d's FIN has no place in the connection and is only
// counted: a plain HTTP request sent again on a new upstream connection
// after the first one failed, or a tunnel after a 101 response the
// request did not ask for.
func (st *stream) data(f *fileService, ts time.Time, d side, p []byte, limit int64) {
	if st.closed || st.fin[d] {
		st.late += int64(len(p))
		return
	}
	st.seen[d] += int64(len(p))
	n := len(p)
	if limit > 0 {
		n = int(min(int64(n), max(limit-st.recorded, 0)))
	}
	for off := 0; off < n; off += maxSegment {
		end := min(off+maxSegment, n)
		flags := byte(flagACK)
		if end == n {
			flags |= flagPSH
		}
		st.send(f, ts, d, flags, nil, p[off:end], nil)
	}
	if n > 0 {
		st.recorded += int64(n)
		st.send(f, ts, d.other(), flagACK, nil, nil, nil)
	}
	st.next[d] += uint32(len(p) - n)
}

// finish writes end d's FIN, once, when its stream ends, and the other
// end's ACK of it. When the other end has finished too, that ACK is the
// connection's last packet: close writes it, with the closing comment.
func (st *stream) finish(f *fileService, ts time.Time, d side) {
	if st.closed || st.fin[d] {
		return
	}
	st.fin[d], st.lastFIN = true, d
	st.send(f, ts, d, flagFIN|flagACK, nil, nil, nil)
	if !st.fin[d.other()] {
		st.send(f, ts, d.other(), flagACK, nil, nil, nil)
	}
}

// close ends the connection when the channel has closed: the FINs not
// written yet (first's first, when neither end finished; the client's,
// when its end was held) and the ACK of the last FIN. The first packet it
// writes carries comment, which says how the channel ended.
func (st *stream) close(f *fileService, ts time.Time, first side, comment string) {
	if st.closed {
		return
	}
	st.closed = true
	if st.heldEnd {
		first = fromClient
	}
	comments := []string{comment}
	for _, d := range []side{first, first.other()} {
		if st.fin[d] {
			continue
		}
		// Its FIN|ACK also acknowledges a FIN the other end sent.
		st.fin[d], st.lastFIN = true, d
		st.send(f, ts, d, flagFIN|flagACK, nil, nil, comments)
		comments = nil
	}
	st.send(f, ts, st.lastFIN.other(), flagACK, nil, nil, comments)
}

// summary is the comment on the first packet close writes.
func (st *stream) summary(stats plugins.Stats, limit int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ferry channel %s closed: %s", st.id, stats.Reason)
	if stats.Err != nil {
		fmt.Fprintf(&b, " (%v)", stats.Err)
	}
	fmt.Fprintf(&b, "; %d bytes client to target, %d target to client", st.seen[fromClient], st.seen[fromTarget])
	if seen := st.seen[fromClient] + st.seen[fromTarget]; seen > st.recorded {
		fmt.Fprintf(&b, "; max_bytes %d reached, %d bytes not recorded", limit, seen-st.recorded)
	}
	if st.late > 0 {
		fmt.Fprintf(&b, "; %d bytes sent after their side's FIN not recorded", st.late)
	}
	return commentText(b.String())
}
