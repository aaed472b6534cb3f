package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"ferry/scripts/internal/load"
)

// maxOps bounds every loop of the driver, whatever the duration.
const maxOps = 1 << 24

// outcome is how one operation ended.
type outcome int

const (
	ok         outcome = iota // normal traffic that worked
	expected                  // a failure scenario that ended the way it should
	unexpected                // anything else: the soak fails
	cut                       // stopped by the end of the load: not counted
)

type counts struct{ ok, expected, unexpected int64 }

// driver runs the load against ferry and counts what happens.
type driver struct {
	cfg                         config
	target, resetAddr, closed   netip.AddrPort
	httpTarget                  string // host:port of the HTTP target
	all, proxied                []path // all reach the stream target; proxied can name any target
	dead                        *path  // a tcp listener whose target is closed, if any
	httpClients                 []*http.Client
	loadEnd                     time.Time
	stop                        chan struct{} // closed to end the load early (ferry died)
	stopOnce                    sync.Once
	wg                          sync.WaitGroup
	nOK, nExpected, nUnexpected atomic.Int64
	skipped                     atomic.Int64 // paced operations not started: all slots busy
	mu                          sync.Mutex
	byName                      map[string]*counts
	names                       []string                   // in order of first use
	errs                        []string                   // the first unexpected errors
	shortLat                    map[string][]time.Duration // of the short tunnels that worked, by path
}

// loading says whether the load should go on.
func (d *driver) loading() bool {
	select {
	case <-d.stop:
		return false
	default:
		return time.Now().Before(d.loadEnd)
	}
}

func (d *driver) abort() { d.stopOnce.Do(func() { close(d.stop) }) }

// pause sleeps for t, or until the load ends; it reports whether the
// load goes on.
func (d *driver) pause(t time.Duration) bool {
	t = min(t, time.Until(d.loadEnd))
	if t > 0 {
		tm := time.NewTimer(t)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-d.stop:
		}
	}
	return d.loading()
}

// opDeadline bounds one operation.
func (d *driver) opDeadline() time.Time { return time.Now().Add(d.cfg.opTimeout) }

func (d *driver) record(name string, o outcome, err error) {
	switch o {
	case ok:
		d.nOK.Add(1)
	case expected:
		d.nExpected.Add(1)
	case unexpected:
		d.nUnexpected.Add(1)
	case cut:
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.byName[name]
	if c == nil {
		c = &counts{}
		d.byName[name] = c
		d.names = append(d.names, name)
	}
	switch o {
	case ok:
		c.ok++
	case expected:
		c.expected++
	case unexpected:
		c.unexpected++
		if err == nil {
			err = errors.New("unexpected outcome")
		}
		msg := fmt.Sprintf("%s: %v", name, err)
		if len(d.errs) < 20 {
			d.errs = append(d.errs, msg)
			fmt.Fprintf(os.Stderr, "soak: unexpected: %s\n", msg)
		}
	}
}

// paced starts run(i) rate times a second, each in its own goroutine,
// at most conc at once; a start that finds every slot busy is skipped.
func (d *driver) paced(rate float64, conc int, run func(i int)) {
	defer d.wg.Done()
	if rate <= 0 || conc <= 0 {
		return
	}
	interval := time.Duration(float64(time.Second) / rate)
	sem := make(chan struct{}, conc)
	next := time.Now()
	for i := 0; i < maxOps; i++ {
		next = next.Add(interval)
		if w := time.Until(next); w > 0 {
			if !d.pause(w) {
				return
			}
		} else if w < -time.Second {
			next = time.Now() // behind after a stall: no burst to catch up
		}
		if !d.loading() {
			return
		}
		select {
		case sem <- struct{}{}:
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer func() { <-sem }()
				run(i)
			}()
		default:
			d.skipped.Add(1)
		}
	}
}

// start runs every kind of load until loadEnd; wait for d.wg afterwards.
func (d *driver) start() {
	c := d.cfg
	d.wg.Add(3)
	go d.paced(c.shortRate, c.shortConc, d.short)
	go d.paced(c.httpRate, 2*c.httpConns+2, d.httpRequest)
	go d.paced(c.failRate, c.failConc, d.failure)
	for w := range c.longWorkers {
		d.wg.Add(1)
		go d.long(w)
	}
	for w := range c.idle {
		d.wg.Add(1)
		go d.idleHolder(w)
	}
}

// short is one short connection: open a tunnel, echo a few bytes, and
// close after the target has.
//
// One in len(d.all)+1 goes straight to the target, not through ferry: a
// control for the latencies, which the machine alone can stretch.
func (d *driver) short(i int) {
	p := path{"direct", "tcp", d.target.String()}
	if k := i % (len(d.all) + 1); k < len(d.all) {
		p = d.all[k]
	}
	name := "short " + p.name
	t0 := time.Now()
	c, err := dial(p, d.target, d.opDeadline())
	if err != nil {
		d.record(name, unexpected, err)
		return
	}
	defer c.Close()
	n := 1 + i%64
	msg := make([]byte, 0, 4+n)
	msg = binary.BigEndian.AppendUint16(append(msg, 'E'), uint16(n))
	msg = append(append(msg, patternAt(int64(i), n)...), 'C')
	if _, err := c.Write(msg); err != nil {
		d.record(name, unexpected, fmt.Errorf("write: %w", err))
		return
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		d.record(name, unexpected, fmt.Errorf("echo: %w", err))
		return
	}
	if string(got) != string(msg[3:3+n]) {
		d.record(name, unexpected, errors.New("echo differs"))
		return
	}
	if err := expectEOF(c); err != nil {
		d.record(name, unexpected, err)
		return
	}
	lat := time.Since(t0)
	d.mu.Lock()
	if len(d.shortLat[p.name]) < 1<<20 {
		d.shortLat[p.name] = append(d.shortLat[p.name], lat)
	}
	d.mu.Unlock()
	d.record(name, ok, nil)
}

// expectEOF waits for the close that follows the last answer.
func expectEOF(c net.Conn) error {
	var one [1]byte
	n, err := c.Read(one[:])
	if n > 0 {
		return errors.New("bytes after the last answer")
	}
	if err != io.EOF {
		return fmt.Errorf("waiting for the close: %w", err)
	}
	return nil
}

// long is one long-transfer worker: a tunnel carries cfg.longReuse
// transfers of cfg.longBytes, alternately up and down, with a pause
// after each; then the next tunnel, on the next path.
func (d *driver) long(w int) {
	defer d.wg.Done()
	for i := 0; i < maxOps && d.loading(); i++ {
		p := d.all[(w+i)%len(d.all)]
		name := "long " + p.name
		c, err := dial(p, d.target, d.opDeadline())
		if err != nil {
			d.record(name, unexpected, err)
			d.pause(d.cfg.longPause)
			continue
		}
		healthy := true
		for k := 0; k < d.cfg.longReuse && d.loading(); k++ {
			up := (w+i+k)%2 == 0
			c.SetDeadline(d.opDeadline())
			if err := transfer(c, up, d.cfg.longBytes); err != nil {
				d.record(name, unexpected, err)
				healthy = false
				break
			}
			d.record(name, ok, nil)
			if !d.pause(d.cfg.longPause) {
				break
			}
		}
		if healthy {
			c.SetDeadline(d.opDeadline())
			if _, err := c.Write([]byte{'C'}); err != nil {
				d.record(name, unexpected, fmt.Errorf("close: %w", err))
			} else if err := expectEOF(c); err != nil {
				d.record(name, unexpected, err)
			}
		}
		c.Close()
	}
}

// transfer moves n bytes of the pattern up (client to target) or down.
func transfer(c net.Conn, up bool, n int64) error {
	h := make([]byte, 9)
	h[0] = 'D'
	if up {
		h[0] = 'U'
	}
	binary.BigEndian.PutUint64(h[1:], uint64(n))
	if _, err := c.Write(h); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if up {
		if err := writePattern(c, n); err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		var ack [1]byte
		if _, err := io.ReadFull(c, ack[:]); err != nil {
			return fmt.Errorf("upload acknowledgement: %w", err)
		}
		if ack[0] != 'K' {
			return errors.New("upload: the target got other bytes than were sent")
		}
		return nil
	}
	got, err := readPattern(c, n)
	if err != nil {
		return fmt.Errorf("download: %w after %d of %d bytes", err, got, n)
	}
	return nil
}

// readPattern reads n bytes and checks them against the pattern; it
// returns how many it read.
func readPattern(c net.Conn, n int64) (int64, error) {
	buf := make([]byte, chunk)
	var off int64
	for off < n {
		k, err := c.Read(buf[:min(int64(len(buf)), n-off)])
		if string(buf[:k]) != string(patternAt(off, k)) {
			return off, errors.New("bytes differ from the pattern")
		}
		off += int64(k)
		if err != nil {
			return off, err
		}
	}
	return off, nil
}

// httpRequest is one plain http:// request through ferry's keep-alive
// connections: a GET of a few KiB or a POST of a body.
func (d *driver) httpRequest(i int) {
	hc := d.httpClients[i%len(d.httpClients)]
	name := "http"
	if i%len(d.httpClients) == 1 {
		name = "http+hook"
	}
	n := 1 + (i*7919)%(16<<10)
	var resp *http.Response
	var err error
	if i%4 == 3 {
		resp, err = hc.Post("http://"+d.httpTarget+"/p", "application/octet-stream", strings.NewReader(string(patternAt(0, n))))
	} else {
		resp, err = hc.Get("http://" + d.httpTarget + "/b?n=" + strconv.Itoa(n))
	}
	if err != nil {
		d.record(name, unexpected, err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, chunk))
	switch {
	case err != nil:
		d.record(name, unexpected, fmt.Errorf("body: %w", err))
	case resp.StatusCode != 200:
		d.record(name, unexpected, fmt.Errorf("status %d: %q", resp.StatusCode, body))
	case i%4 == 3 && string(body) != strconv.Itoa(n):
		d.record(name, unexpected, fmt.Errorf("POST answer %q, want %d", body, n))
	case i%4 != 3 && string(body) != string(patternAt(0, n)):
		d.record(name, unexpected, fmt.Errorf("GET body of %d bytes differs from the %d sent", len(body), n))
	default:
		d.record(name, ok, nil)
	}
}

// idleHolder keeps one tunnel open at a time and abandons it: either it
// waits for ferry's idle timeout to close it (idle-expire), or it closes
// it itself after a while without a word to the target (idle-abandon).
func (d *driver) idleHolder(w int) {
	defer d.wg.Done()
	// Spread the holders out so they do not all expire at once.
	if !d.pause(time.Duration(w) * d.cfg.idleTimeout / time.Duration(max(1, d.cfg.idle))) {
		return
	}
	for i := 0; i < maxOps && d.loading(); i++ {
		p := d.all[(w+i)%len(d.all)]
		expire := (w+i)%2 == 0
		name := "idle-abandon " + p.name
		if expire {
			name = "idle-expire " + p.name
		}
		c, err := dial(p, d.target, d.opDeadline())
		if err != nil {
			d.record(name, unexpected, err)
			d.pause(time.Second)
			continue
		}
		// One echo, so the path to the target is up and has carried data.
		msg := []byte{'E', 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}
		got := make([]byte, 8)
		if _, err := c.Write(msg); err != nil {
			d.record(name, unexpected, fmt.Errorf("write: %w", err))
			c.Close()
			continue
		}
		if _, err := io.ReadFull(c, got); err != nil {
			d.record(name, unexpected, fmt.Errorf("echo: %w", err))
			c.Close()
			continue
		}
		quiet := time.Now()
		if expire {
			limit := quiet.Add(d.cfg.idleTimeout + 10*time.Second)
			c.SetDeadline(earliest(limit, d.loadEnd))
			var one [1]byte
			n, err := c.Read(one[:])
			idle := time.Since(quiet)
			switch {
			case n > 0:
				d.record(name, unexpected, errors.New("bytes on an idle tunnel"))
			case isTimeout(err) && time.Now().Before(limit):
				d.record(name, cut, nil) // the load ended first
			case isTimeout(err):
				d.record(name, unexpected, fmt.Errorf("still open after %v idle (idle_timeout %v)", idle.Round(time.Second), d.cfg.idleTimeout))
			case idle < d.cfg.idleTimeout-time.Second:
				d.record(name, unexpected, fmt.Errorf("closed after %v idle, before idle_timeout %v: %v", idle.Round(time.Millisecond), d.cfg.idleTimeout, err))
			default:
				d.record(name, expected, nil)
			}
			c.Close()
			continue
		}
		hold := time.Second + rand.N(max(time.Second, d.cfg.idleTimeout/2))
		end := earliest(quiet.Add(hold), d.loadEnd)
		c.SetDeadline(end)
		var one [1]byte
		n, err := c.Read(one[:])
		switch {
		case n > 0:
			d.record(name, unexpected, errors.New("bytes on an idle tunnel"))
		case !isTimeout(err):
			d.record(name, unexpected, fmt.Errorf("closed after %v idle, before idle_timeout %v: %v", time.Since(quiet).Round(time.Millisecond), d.cfg.idleTimeout, err))
		default:
			d.record(name, ok, nil)
		}
		if i%2 == 0 {
			load.Reset(c)
		} else {
			c.Close()
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isClose says whether err is how a closed or reset connection reads.
func isClose(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
