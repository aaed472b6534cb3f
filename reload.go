package main

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// reloadTimeout bounds one reload: loading the file, reading the files
// it names, building and applying the new configuration.
const reloadTimeout = 30 * time.Second

// errReloadBusy refuses a reload asked for while another one runs.
var errReloadBusy = errors.New("reload refused: another reload is still running")

// reloader runs reloads one at a time, each apart from its caller and
// with a deadline, so that the signal loop never waits on one: SIGTERM
// is obeyed even while a reload is stuck. A reload asked for while one
// runs is refused (not queued): the caller sees errReloadBusy, SIGHUP's
// log says so, and the operator sends it again once the first is done.
type reloader struct {
	// run loads and applies the configuration.
	run     func() error
	timeout time.Duration // if zero, reloadTimeout

	mu   sync.Mutex
	busy bool // a run is going on, maybe past its deadline
	// idle is closed when no run is going on; replaced at each start.
	idle chan struct{}
}

// reload starts a run and waits for it for at most the timeout. A run
// that misses its deadline goes on in the background (Go cannot stop
// it), and every reload is refused until it ends.
func (r *reloader) reload() error {
	r.mu.Lock()
	if r.busy {
		r.mu.Unlock()
		return errReloadBusy
	}
	r.busy = true
	idle := make(chan struct{})
	r.idle = idle
	r.mu.Unlock()

	done := make(chan error, 1)
	go func() {
		err := r.run()
		r.mu.Lock()
		r.busy = false
		close(idle)
		r.mu.Unlock()
		done <- err
	}()
	timeout := r.timeout
	if timeout <= 0 {
		timeout = reloadTimeout
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("reload: still running after %v, going on in the background; reloads are refused until it ends", timeout)
	}
}

// wait waits up to d for a running reload to end, and reports whether
// none is running.
func (r *reloader) wait(d time.Duration) bool {
	r.mu.Lock()
	busy, idle := r.busy, r.idle
	r.mu.Unlock()
	if !busy {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}
