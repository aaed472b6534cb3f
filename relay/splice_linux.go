package relay

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ferry/plugins"
)

// spliceable reports whether spliceCopy can join a and b.
func spliceable(a, b net.Conn) bool {
	_, okA := a.(*net.TCPConn)
	_, okB := b.(*net.TCPConn)
	return okA && okB
}

// spliceCopy moves bytes from src to dst through a kernel pipe until src's
// EOF (nil) or an error, calling moved after each chunk delivered. Unlike
// io.Copy's splice, which keeps its pipe (two descriptors) for as long as
// the copy runs, it takes a pipe from a shared pool only while bytes flow:
// an idle tunnel holds its two sockets and nothing else. ok is false when
// the connections cannot be spliced (the caller copies another way).
// Small chunks (after a small one, up to smallChunk) are read into a
// pooled buffer and written instead: cheaper than two splices for a few
// bytes, and haproxy does the same.
//
// With idle set, a copy whose source stays silent for the Parker's After
// parks: it returns errParked, and the Parker resumes the direction on a
// new goroutine when the source wakes.
//
// meter, if set, is told each chunk's size before it is written and says
// how much of it may go (plugins.Meter): a cut writes what was kept and
// ends the copy with meter's error (plugins.ErrClose if none).
func spliceCopy(dst, src net.Conn, moved func(int), meter func(int) (int, error), idle *idleWait) (ok bool, err error) {
	l := newSpliceLoop(dst, src, moved, idle)
	if l == nil {
		return false, nil
	}
	l.meter = meter
	return true, l.run()
}

// SpliceN moves exactly n bytes from src to dst through a kernel pipe,
// as a tunnel's spliced direction does, and leaves what src has past
// them unread: for a body whose length is known. src's EOF before n
// bytes is io.ErrUnexpectedEOF. A failure reading src comes back as
// readErr, one writing dst as writeErr. Both must be connections
// CanSplice accepts; others get errors.ErrUnsupported as readErr.
func SpliceN(dst, src net.Conn, n int64, h SpliceHooks) (readErr, writeErr error) {
	moved := h.Moved
	if moved == nil {
		moved = func(int) {}
	}
	l := newSpliceLoop(dst, src, moved, nil)
	if l == nil {
		return errors.ErrUnsupported, nil
	}
	l.left, l.beforeRead, l.beforeWrite = n, h.BeforeRead, h.BeforeWrite
	l.sp.small = false // a known large body: splice from the first chunk
	err := l.run()
	var we writeError
	if errors.As(err, &we) {
		return nil, we.error
	}
	var re readError
	if errors.As(err, &re) {
		return re.error, nil
	}
	return err, nil
}

// spliceLoop is one spliceCopy: the loop reads a chunk (fill), then
// hands it to writeSmall or writePipe by where fill put it, while watch
// decides when a silent source parks.
type spliceLoop struct {
	srcRC, dstRC syscall.RawConn
	// sp carries each chunk between the RawConn callbacks, bound once
	// per copy in fill and drain, not per chunk: a closure handed to
	// RawConn escapes, and would allocate each time.
	sp          splicer
	fill, drain func(uintptr) bool
	small       chunkWriter // writes small chunks to dst
	moved       func(int)
	meter       func(int) (int, error) // nil: no Meters
	total       int64                  // bytes moved so far
	watch       idleWatch
	// left is what SpliceN still has to move; -1 for a copy to EOF.
	left int64
	// beforeRead and beforeWrite, if set, run before each read of a
	// chunk and each write of one (SpliceN's deadlines).
	beforeRead  func() error
	beforeWrite func() error
}

// newSpliceLoop prepares a copy from src to dst, or returns nil when the
// two cannot be spliced.
func newSpliceLoop(dst, src net.Conn, moved func(int), idle *idleWait) *spliceLoop {
	s, okS := src.(*net.TCPConn)
	d, okD := dst.(*net.TCPConn)
	if !okS || !okD {
		return nil
	}
	srcRC, err := s.SyscallConn()
	if err != nil {
		return nil
	}
	dstRC, err := d.SyscallConn()
	if err != nil {
		return nil
	}
	l := &spliceLoop{srcRC: srcRC, dstRC: dstRC, moved: moved,
		watch: idleWatch{wait: idle, src: s}, left: -1}
	l.small.init(d)
	l.sp.small = true
	l.fill, l.drain = l.sp.fill, l.sp.drain
	return l
}

// run copies until src's EOF (nil), an error, or errParked.
func (l *spliceLoop) run() error {
	for l.left != 0 {
		if l.beforeRead != nil {
			if err := l.beforeRead(); err != nil {
				return readError{err}
			}
		}
		l.watch.arm(l.total)
		l.sp.p, l.sp.buf, l.sp.n, l.sp.err = nil, nil, 0, nil
		l.sp.max = maxSpliceChunk
		if l.left > 0 && l.left < maxSpliceChunk {
			l.sp.max = int(l.left)
		}
		// fill runs when the socket may have data; the pipe or buffer is
		// taken inside it and handed back if there was none.
		rerr := l.srcRC.Read(l.fill)
		if rerr == nil {
			rerr = l.sp.err
		}
		if rerr != nil {
			l.sp.release()
			switch l.watch.expired(rerr, l.total, l.srcRC) {
			case watchParked:
				return errParked
			case watchGoOn:
				continue
			}
			return readError{wrapSyscall("splice", rerr)}
		}
		cut, merr := l.metered()
		var n int
		var err error
		if l.sp.buf != nil {
			n, err = l.writeSmall()
		} else {
			n, err = l.writePipe(cut)
		}
		if err != nil {
			return err
		}
		if n > 0 {
			l.total += int64(n)
			if l.left > 0 {
				l.left -= int64(n)
			}
			l.moved(n)
		}
		if merr != nil {
			return merr
		}
		if n == 0 { // EOF
			if l.left > 0 {
				return readError{io.ErrUnexpectedEOF}
			}
			return nil
		}
	}
	return nil
}

// metered tells the meter about the chunk just read and shortens it to
// what may go. cut is set when bytes were left out: the pipe still holds
// them.
func (l *spliceLoop) metered() (cut bool, err error) {
	n := l.sp.n
	if l.meter == nil || n == 0 {
		return false, nil
	}
	keep, err := l.meter(n)
	if keep >= n {
		return false, err
	}
	l.sp.n = max(keep, 0)
	if err == nil {
		err = plugins.ErrClose
	}
	return true, err
}

// writeSmall writes a small chunk, read into a buffer, back with one
// write, which for a few bytes costs less than two splices through a
// pipe. It returns the bytes written, 0 at EOF.
func (l *spliceLoop) writeSmall() (int, error) {
	sp := &l.sp
	n := sp.n
	if n == 0 {
		smallBufs.Put(sp.buf)
		return 0, nil // EOF
	}
	werr := l.startWrite()
	if werr == nil {
		_, werr = l.small.write((*sp.buf)[:n])
	}
	full := n == len(*sp.buf)
	smallBufs.Put(sp.buf)
	if werr != nil {
		return 0, writeError{werr}
	}
	// A full buffer means more is waiting: splice the next chunk.
	sp.small = !full
	return n, nil
}

// startWrite runs SpliceN's write hook, if any, before a write to dst.
func (l *spliceLoop) startWrite() error {
	if l.beforeWrite == nil {
		return nil
	}
	return l.beforeWrite()
}

// drainPipe splices the chunk in the pipe to dst. Under SpliceN's write
// hook, which renews dst's write deadline, a write the deadline cut
// after some of the chunk went is renewed and goes on: a destination
// that reads slowly is not idle, and a chunk may be 1 MiB. Each round
// must move bytes, so a destination that takes none still ends it.
func (l *spliceLoop) drainPipe() error {
	for {
		if err := l.startWrite(); err != nil {
			return err
		}
		left := l.sp.left
		err := l.dstRC.Write(l.drain)
		if err == nil {
			err = l.sp.err
		}
		if err == nil || l.beforeWrite == nil || l.sp.left == left || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
}

// writePipe splices a chunk from the pipe to dst and gives the pipe back
// to the pool. It returns the bytes written, 0 at EOF or when all of the
// chunk was cut. cut: the meter left bytes in the pipe.
func (l *spliceLoop) writePipe(cut bool) (int, error) {
	sp := &l.sp
	n := sp.n
	var werr error
	if n > 0 {
		sp.small = n < smallChunk
		sp.left, sp.err = n, nil
		werr = l.drainPipe()
	}
	// A pipe that may still hold bytes (what a cut left out, or what a
	// failed write did not take) is closed rather than reused.
	if cut || werr != nil {
		sp.p.close()
	} else {
		pipes.put(sp.p)
	}
	if werr != nil {
		return 0, writeError{wrapSyscall("splice", werr)}
	}
	return n, nil
}

// idleWatch measures a copy's silence with its source's read deadline
// and parks the copy when the silence lasts the Parker's After. The
// deadline is armed once per After, not per chunk, so a busy copy pays a
// timer reset per After. A zero idleWatch (wait nil) never parks.
type idleWatch struct {
	wait    *idleWait
	src     *net.TCPConn
	armed   bool
	armedAt int64 // bytes moved when the deadline was armed
}

// What idleWatch.expired decided about a read error.
const (
	watchNotMine = iota // not the watch's deadline: a read error
	watchGoOn           // the deadline passed: read again
	watchParked         // the copy parked: its goroutine returns
)

// arm sets the read deadline if it is not armed; total is the bytes
// moved so far.
func (w *idleWatch) arm(total int64) {
	if w.wait != nil && !w.armed {
		w.src.SetReadDeadline(time.Now().Add(w.wait.c.Parker.After))
		w.armed, w.armedAt = true, total
	}
}

// expired looks at a read error. When it is the watch's deadline, the
// copy reads on if bytes moved since the deadline was armed, and parks
// otherwise (reading on when the Parker declines). Any other error
// clears the deadline.
func (w *idleWatch) expired(rerr error, total int64, srcRC syscall.RawConn) int {
	if w.wait == nil {
		return watchNotMine
	}
	if !errors.Is(rerr, os.ErrDeadlineExceeded) {
		w.src.SetReadDeadline(time.Time{})
		return watchNotMine
	}
	w.armed = false
	if total != w.armedAt {
		return watchGoOn // bytes moved since: not idle
	}
	w.src.SetReadDeadline(time.Time{})
	w.wait.c.keepAlive() // idle now: the upstream may need probing
	if w.wait.c.Parker.park(w.wait.c, w.wait.dir, srcRC) {
		return watchParked
	}
	return watchGoOn
}

// idleWait is what a parkable copy needs to park.
type idleWait struct {
	c   *Channel
	dir plugins.Direction
}

// splicer is one direction's state between RawConn callbacks.
type splicer struct {
	p       *pipe
	buf     *[]byte
	small   bool // the last chunk was small: read the next into a buffer
	n, left int
	max     int // the most this read may take
	err     error
}

// smallChunk is the size up to which chunks go through a buffer rather
// than a pipe. Ping-pong traffic (requests, answers, keystrokes) stays
// under it; a bulk transfer fills the buffer once and then splices.
const smallChunk = 16 << 10

// smallBufs holds the buffers for small chunks, taken only while a chunk
// is handled.
var smallBufs = sync.Pool{New: func() any {
	b := make([]byte, smallChunk)
	return &b
}}

// release hands back the pipe or buffer fill took for a read that
// failed.
func (sp *splicer) release() {
	if sp.p != nil {
		pipes.put(sp.p)
	}
	if sp.buf != nil {
		smallBufs.Put(sp.buf)
	}
}

func (sp *splicer) fill(fd uintptr) bool {
	if !sp.small {
		if sp.p = pipes.get(); sp.p != nil {
			return sp.fillPipe(fd)
		}
		// Out of descriptors for a pipe: this chunk goes through a
		// buffer, and the next tries a pipe again.
	}
	sp.buf = smallBufs.Get().(*[]byte)
	m, err := rawRead(int(fd), (*sp.buf)[:min(len(*sp.buf), sp.max)])
	if err == unix.EAGAIN {
		smallBufs.Put(sp.buf)
		sp.buf = nil
		return false
	}
	sp.n, sp.err = max(m, 0), err
	return true
}

// fillPipe splices what the socket has into sp.p.
func (sp *splicer) fillPipe(fd uintptr) bool {
	m, err := unix.Splice(int(fd), nil, sp.p.w, nil, sp.max, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if err == unix.EAGAIN {
		pipes.put(sp.p)
		sp.p = nil
		return false
	}
	sp.n, sp.err = int(m), err
	return true
}

func (sp *splicer) drain(fd uintptr) bool {
	for sp.left > 0 {
		m, err := unix.Splice(sp.p.r, nil, int(fd), nil, sp.left, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err == unix.EAGAIN {
			return false
		}
		if err != nil {
			sp.err = err
			return true
		}
		sp.left -= int(m)
	}
	return true
}

// rawRead and rawWrite are read(2) and write(2) on a non-blocking socket
// without the runtime's syscall bookkeeping. unix.Read and unix.Write go
// through entersyscall, which wakes the sleeping sysmon thread (a futex
// wake and a context switch) whenever the process had gone idle, as it
// does between the messages of a request-response exchange: a profile of
// a 64-byte ping-pong showed that wake-up on every small read and write.
// A non-blocking read or write of at most smallChunk bytes returns at
// once, so there is nothing for the scheduler to take over meanwhile.
//
// Both retry on EINTR.
//
// The read that follows a short read and only says EAGAIN stays: a short
// read does not mean nothing is left, since a FIN (or an error) that came
// with the data is reported by the next read, with no new readiness
// event to wait for (TestSpliceSmallChunkThenEOF).
func rawRead(fd int, p []byte) (int, error) { return rawRW(unix.SYS_READ, fd, p) }

func rawWrite(fd int, p []byte) (int, error) { return rawRW(unix.SYS_WRITE, fd, p) }

func rawRW(trap uintptr, fd int, p []byte) (int, error) {
	for {
		r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return -1, e
	}
}

func wrapSyscall(name string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &net.OpError{Op: name, Net: "tcp", Err: err}
	}
	return err
}

// maxSpliceChunk is what one splice call may move, and the size pipes are
// given (as Go's own splice does).
const maxSpliceChunk = 1 << 20
