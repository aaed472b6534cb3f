package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	"ferry/plugins/pkg/safefile"
)

// racyWindow: a file modified this shortly before it was read may be
// written again with the same size and a modification time that the
// kernel's coarse clock (a few ms) or the file system (up to 2 s on some)
// cannot tell apart, as when one bcrypt hash replaces another. Such a file
// is re-read at the next poll and compared by content.
const racyWindow = 2 * time.Second

// settleDelay: a file modified this recently may be half written (a
// truncate before the write, a copy in 4 KiB pieces): it is left for a
// later poll, so the users never briefly become what a partial file says.
const settleDelay = 100 * time.Millisecond

// fileState is what the last read of the htpasswd file saw.
type fileState struct {
	read bool // false until the first read
	mod  time.Time
	size int64
	sum  [32]byte // SHA-256 of the content
	racy bool     // mod was within racyWindow of the read
}

// reload reads the htpasswd file if it changed since the last read and,
// when it parses, swaps in its users (with the inline ones) and drops the
// cached checks of users whose hash changed or who are gone. On any error
// the users stay as they were. It reports whether the users changed.
//
// A file that stays bad is reported once, not at every poll: its content
// is remembered like a good one's, so it is only parsed again once it has
// changed.
func (p *Plugin) reload() (changed bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fi, err := os.Stat(p.path)
	if err != nil {
		return false, err // names the path
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("%s: not a regular file", p.path)
	}
	prev := p.seen
	if prev.read && !prev.racy && fi.ModTime().Equal(prev.mod) && fi.Size() == prev.size {
		return false, nil
	}
	if age := time.Since(fi.ModTime()); age >= 0 && age < p.settle {
		return false, nil
	}
	// Stat before reading: a write between the two leaves a newer file
	// than the state says, which the next poll reads again.
	data, err := safefile.ReadFile(p.path, safefile.MaxList)
	if err != nil {
		return false, err
	}
	// A write that began after the stat (a truncate, then the new
	// content) may have been read half done: if the file is not what the
	// stat saw, this poll applies nothing and a later one reads it whole.
	if after, err := os.Stat(p.path); err != nil || !after.ModTime().Equal(fi.ModTime()) ||
		after.Size() != fi.Size() || int64(len(data)) != fi.Size() {
		return false, nil
	}
	p.seen = fileState{
		read: true,
		mod:  fi.ModTime(),
		size: fi.Size(),
		sum:  sha256.Sum256(data),
		racy: time.Since(fi.ModTime()) < racyWindow,
	}
	if prev.read && p.seen.sum == prev.sum {
		return false, nil
	}
	users, err := parseHtpasswd(p.path, data)
	if err == nil {
		users, err = merge(p.inline, users)
	}
	if err != nil {
		return false, err
	}
	t, err := p.newTable(users)
	if err != nil {
		return false, err
	}
	p.users.Store(t)
	p.cache.retain(func(user string) ([]byte, bool) {
		e, ok := t.users[user]
		return e.hash, ok
	})
	return true, nil
}

// poll runs reload and logs what happened: each new error once, at error
// level, and each change of users at info.
func (p *Plugin) poll() {
	changed, err := p.reload()
	n := len(p.users.Load().users)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil:
		if msg := err.Error(); msg != p.lastErr {
			p.lastErr = msg
			p.log.Error().Err(err).Int("users", n).Msg("reload users: keeping the current ones")
		}
	case changed:
		p.lastErr = ""
		p.log.Info().Str("file", p.path).Int("users", n).Msg("users reloaded")
	default:
		p.lastErr = ""
	}
}

// poller is the service that polls the htpasswd file of one instance.
// The server starts it before the listeners open and stops it after the
// last channel has ended.
type poller struct {
	p     *Plugin
	every time.Duration
	stop  chan struct{}
	done  chan struct{}
}

// Start implements plugins.Service.
func (w *poller) Start(context.Context) error {
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	go w.run()
	return nil
}

// Stop implements plugins.Service.
func (w *poller) Stop(ctx context.Context) error {
	if w.stop == nil {
		return nil
	}
	close(w.stop)
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *poller) run() {
	defer close(w.done)
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	w.p.poll() // a change made between New and Start
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
			w.p.poll()
		}
	}
}
