package relay

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// spliceCopy moves bytes from src to dst through a kernel pipe until src's
// EOF (nil) or an error, calling moved after each chunk delivered. Unlike
// io.Copy's splice, which keeps its pipe (two descriptors) for as long as
// the copy runs, it takes a pipe from a shared pool only while bytes flow:
// an idle tunnel holds its two sockets and nothing else. ok is false when
// the connections cannot be spliced (the caller copies another way).
// spliceable reports whether spliceCopy can join a and b.
func spliceable(a, b net.Conn) bool {
	_, okA := a.(*net.TCPConn)
	_, okB := b.(*net.TCPConn)
	return okA && okB
}

func spliceCopy(dst, src net.Conn, moved func(int)) (ok bool, err error) {
	s, okS := src.(*net.TCPConn)
	d, okD := dst.(*net.TCPConn)
	if !okS || !okD {
		return false, nil
	}
	srcRC, err := s.SyscallConn()
	if err != nil {
		return false, nil
	}
	dstRC, err := d.SyscallConn()
	if err != nil {
		return false, nil
	}
	// The callbacks are bound once per copy, not per chunk: a closure
	// handed to RawConn escapes, and would allocate each time.
	sp := &splicer{}
	fill, drain := sp.fill, sp.drain
	for {
		sp.p, sp.n, sp.err = nil, 0, nil
		// fill runs when the socket may have data; the pipe is taken
		// inside it and handed back if there was none.
		rerr := srcRC.Read(fill)
		if rerr == nil {
			rerr = sp.err
		}
		if rerr != nil {
			if sp.p != nil {
				putPipe(sp.p)
			}
			if errors.Is(rerr, errNoPipe) {
				// Out of descriptors for a pipe: copy through user space.
				_, err := io.Copy(countingWriter{dst, moved}, readerOnly{src})
				return true, err
			}
			return true, readError{wrapSyscall("splice", rerr)}
		}
		if sp.n == 0 {
			putPipe(sp.p)
			return true, nil // EOF
		}
		n := sp.n
		sp.left, sp.err = n, nil
		werr := dstRC.Write(drain)
		if werr == nil {
			werr = sp.err
		}
		if werr != nil {
			// The pipe may still hold bytes: do not reuse it.
			sp.p.close()
			return true, writeError{wrapSyscall("splice", werr)}
		}
		putPipe(sp.p)
		moved(n)
	}
}

// splicer is one direction's state between RawConn callbacks.
type splicer struct {
	p       *pipe
	n, left int
	err     error
}

func (sp *splicer) fill(fd uintptr) bool {
	sp.p = getPipe()
	if sp.p == nil {
		sp.err = errNoPipe
		return true
	}
	m, err := unix.Splice(int(fd), nil, sp.p.w, nil, maxSpliceChunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if err == unix.EAGAIN {
		putPipe(sp.p)
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

var errNoPipe = errors.New("no pipe")

type pipe struct{ r, w int }

func (p *pipe) close() {
	runtime.SetFinalizer(p, nil)
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipes holds empty pipes between chunks of any channel. Pipes the pool
// drops are closed by their finalizer.
var pipes = sync.Pool{New: func() any {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil
	}
	// A pipe as large as a splice call asks for halves the calls per
	// byte; smaller (the limit is a sysctl) still works.
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, maxSpliceChunk)
	p := &pipe{r: fds[0], w: fds[1]}
	runtime.SetFinalizer(p, (*pipe).close)
	return p
}}

func getPipe() *pipe {
	p, _ := pipes.Get().(*pipe)
	return p
}

func putPipe(p *pipe) { pipes.Put(p) }

// readerOnly and countingWriter hide WriteTo and ReadFrom, so io.Copy
// uses a buffer instead of trying splice again.
type readerOnly struct{ io.Reader }

type countingWriter struct {
	w     io.Writer
	moved func(int)
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.moved(n)
	return n, err
}
