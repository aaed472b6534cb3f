package relay

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ferry/plugins"
)

// Parker lets idle tunnels wait without goroutines. A copy that has seen
// no bytes for After hands its source socket to the Parker's epoll set
// and its goroutine exits; when the socket becomes readable (or is hung
// up), the Parker starts a new goroutine that carries on. An idle tunnel
// then costs its two sockets and its structs, not two goroutine stacks.
//
// The epoll descriptor itself waits in Go's netpoller, so the Parker's
// one goroutine blocks no thread.
type Parker struct {
	// After is how long a copy waits in the usual way before it parks.
	// Short waits (request and response, ping-pong) never park, so their
	// latency is untouched; each wake-up after a park costs a goroutine
	// start, a few microseconds against at least After of silence.
	After time.Duration

	file *os.File
	rc   syscall.RawConn

	mu     sync.Mutex
	slots  []parkSlot // parked copies, by the low half of their token
	free   []uint32   // free slots
	parked atomic.Int64
	done   chan struct{}
}

// parkSlot holds one parked direction of a channel, or none (c nil).
// The token in its socket's epoll event is its index and gen; gen
// changes each time the slot is filled, so an event for a copy taken
// since (by end, or Close) does not wake the slot's next copy. A slot
// costs an idle tunnel 20 bytes a direction where a map entry cost
// about 50.
type parkSlot struct {
	c   *Channel
	dir plugins.Direction
	gen uint32
}

// DefaultParkAfter is the wait before an idle copy parks.
const DefaultParkAfter = 100 * time.Millisecond

// NewParker opens the epoll set and starts the goroutine that watches it.
// Close it when no channel uses it any more.
func NewParker(after time.Duration) (*Parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// Non-blocking, so os.NewFile puts it in Go's netpoller: the watching
	// goroutine then parks like any socket reader instead of holding a
	// thread in epoll_wait.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll set nonblocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "ferry-parker")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	p := &Parker{After: after, file: f, rc: rc, done: make(chan struct{})}
	go p.watch()
	return p, nil
}

// Close stops the watching goroutine. Channels still parked are resumed
// (their sockets will be closed by their owners); it returns once the
// goroutine has exited.
func (p *Parker) Close() error {
	err := p.file.Close()
	<-p.done
	var left []parkSlot
	p.mu.Lock()
	for i := range p.slots {
		if p.slots[i].c != nil {
			left = append(left, p.slots[i])
			p.release(uint32(i))
		}
	}
	p.mu.Unlock()
	for _, w := range left {
		p.parked.Add(-1)
		go w.c.resume(w.dir)
	}
	return err
}

// Parked is the number of copies parked now.
func (p *Parker) Parked() int64 {
	if p == nil {
		return 0
	}
	return p.parked.Load()
}

func (p *Parker) watch() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	var n int
	var werr error
	collect := func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), events, 0)
		if werr == unix.EINTR {
			n, werr = 0, nil
			return false
		}
		return n > 0 || werr != nil
	}
	for {
		if err := p.rc.Read(collect); err != nil || werr != nil {
			return // closed
		}
		for _, ev := range events[:n] {
			token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if w, ok := p.take(token); ok {
				go w.c.resume(w.dir)
			}
		}
	}
}

// take removes a parked copy; ok is false when another party (the event
// loop, or the channel ending) already took it.
func (p *Parker) take(token uint64) (parkSlot, bool) {
	i, gen := uint32(token), uint32(token>>32)
	p.mu.Lock()
	var w parkSlot
	ok := int(i) < len(p.slots) && p.slots[i].c != nil && p.slots[i].gen == gen
	if ok {
		w = p.slots[i]
		p.release(i)
	}
	p.mu.Unlock()
	if ok {
		p.parked.Add(-1)
	}
	return w, ok
}

// fill puts direction dir of c in a free slot and returns its token;
// p.mu is held.
func (p *Parker) fill(c *Channel, dir plugins.Direction) uint64 {
	var i uint32
	if n := len(p.free); n > 0 {
		i = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		i = uint32(len(p.slots))
		p.slots = append(p.slots, parkSlot{})
	}
	w := &p.slots[i]
	w.gen++
	if w.gen == 0 {
		w.gen = 1 // 0 is the token of a copy never parked
	}
	w.c, w.dir = c, dir
	token := uint64(w.gen)<<32 | uint64(i)
	c.parkToken[dir] = token
	return token
}

// release empties slot i; p.mu is held.
func (p *Parker) release(i uint32) {
	p.slots[i].c = nil
	p.free = append(p.free, i)
}

// park registers the copy's source socket. It returns false when the copy
// must carry on in its goroutine: the channel is ending, or the socket
// could not be registered.
func (p *Parker) park(c *Channel, dir plugins.Direction, src syscall.RawConn) bool {
	p.mu.Lock()
	token := p.fill(c, dir)
	p.mu.Unlock()
	p.parked.Add(1)
	ev := unix.EpollEvent{
		// One-shot: after an event the socket stays in the set, disabled,
		// until the copy parks again (EPOLL_CTL_MOD).
		Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd:     int32(uint32(token)),
		Pad:    int32(uint32(token >> 32)),
	}
	var cerr error
	// Control holds the socket open across the call, so its number cannot
	// be closed and reused under us.
	err := src.Control(func(fd uintptr) {
		// The epoll descriptor is held the same way: a closed Parker's
		// number may belong to another file by now.
		if perr := p.rc.Control(func(epfd uintptr) {
			// A socket parked before is still in the set: re-arm it.
			// Keeping no flag for that saves sharing one between the
			// goroutines that run the copy in turn.
			cerr = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_MOD, int(fd), &ev)
			if cerr == unix.ENOENT {
				cerr = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_ADD, int(fd), &ev)
			}
		}); perr != nil {
			cerr = perr
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil || c.ending.Load() {
		// Not parked after all, unless the event loop or end took it in the
		// meantime: then a new goroutine is on its way and this one stops.
		_, mine := p.take(token)
		return !mine
	}
	return true
}

// unpark resumes a parked direction of c at once, so an ending channel's
// copies see their closed sockets and finish.
func (p *Parker) unpark(c *Channel, dir plugins.Direction) {
	p.mu.Lock()
	token := c.parkToken[dir]
	p.mu.Unlock()
	if w, ok := p.take(token); ok {
		go w.c.resume(w.dir)
	}
}

var errParked = errors.New("parked")
