package auth

import (
	"context"
	"crypto/sha256"
	"errors"
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

// emptySettle: an empty file is what a writer leaves between its
// truncate and its write, and a writer stalled longer than settleDelay
// there (a loaded machine, a blocked editor) would briefly empty the
// users. An empty file must stay so this many settle periods first: an
// operator who empties the file on purpose waits a second, not more.
const emptySettle = 10

// fileState is what the last read of a watched file saw.
type fileState struct {
	read bool // false until the first read
	mod  time.Time
	size int64
	sum  [32]byte // SHA-256 of the content
	racy bool     // mod was within racyWindow of the read
}

// watched is a file the plugin reads users or groups from, with what its
// last read saw. Its methods run under Plugin.mu.
type watched struct {
	path string
	seen fileState // the file as last read, good or bad
}

// changed reads the file if it changed since the last read: its content,
// or nil when it did not change (same modification time and size, or the
// same content) or may be half written (modified within settle, an empty
// one within emptySettle times that, or changed while it was read). A
// file that stays bad is reported once, not at every poll: its content
// is remembered like a good one's, so that it is parsed again only once
// it has changed.
func (w *watched) changed(settle time.Duration) ([]byte, error) {
	fi, err := os.Stat(w.path)
	if err != nil {
		return nil, err // names the path
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", w.path)
	}
	prev := w.seen
	if prev.read && !prev.racy && fi.ModTime().Equal(prev.mod) && fi.Size() == prev.size {
		return nil, nil
	}
	wait := settle
	if fi.Size() == 0 {
		wait *= emptySettle
	}
	if age := time.Since(fi.ModTime()); age >= 0 && age < wait {
		return nil, nil
	}
	// Stat before reading: a write between the two leaves a newer file
	// than the state says, which the next poll reads again.
	data, err := safefile.ReadFile(w.path, safefile.MaxList)
	if err != nil {
		return nil, err
	}
	// A write that began after the stat (a truncate, then the new
	// content) may have been read half done: if the file is not what the
	// stat saw, this poll applies nothing and a later one reads it whole.
	if after, err := os.Stat(w.path); err != nil || !after.ModTime().Equal(fi.ModTime()) ||
		after.Size() != fi.Size() || int64(len(data)) != fi.Size() {
		return nil, nil
	}
	w.seen = fileState{
		read: true,
		mod:  fi.ModTime(),
		size: fi.Size(),
		sum:  sha256.Sum256(data),
		racy: time.Since(fi.ModTime()) < racyWindow,
	}
	if prev.read && w.seen.sum == prev.sum {
		return nil, nil
	}
	if data == nil {
		data = []byte{} // an empty file is a change too
	}
	return data, nil
}

// reload reads the htpasswd and groups files that changed since the last
// read and, when they parse, swaps in the users and groups they give
// (with the inline ones) and drops the cached checks of users whose hash
// changed or who are gone. A file with an error leaves what it gave
// before as it was; the other file still applies. It reports whether
// the users or groups changed.
func (p *Plugin) reload() (changed bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	users, uerr := p.readUsers()
	groups, gerr := p.readGroups()
	if users || groups {
		if err := p.publish(); err != nil {
			return false, err
		}
	}
	return users || groups, errors.Join(uerr, gerr)
}

// readUsers reads the htpasswd file if it changed and keeps its users
// when they parse and do not clash with the inline ones.
func (p *Plugin) readUsers() (bool, error) {
	if p.htpasswd == nil {
		return false, nil
	}
	data, err := p.htpasswd.changed(p.settle)
	if data == nil || err != nil {
		return false, err
	}
	users, err := parseHtpasswd(p.htpasswd.path, data)
	if err == nil {
		_, err = merge(p.inline, users)
	}
	if err != nil {
		return false, err
	}
	p.fileUsers = users
	return true, nil
}

// readGroups reads the groups file if it changed and keeps its groups
// when it parses.
func (p *Plugin) readGroups() (bool, error) {
	if p.groupsFile == nil {
		return false, nil
	}
	data, err := p.groupsFile.changed(p.settle)
	if data == nil || err != nil {
		return false, err
	}
	groups, err := parseGroups(p.groupsFile.path, data)
	if err != nil {
		return false, err
	}
	p.fileGroups = groups
	return true, nil
}

// publish swaps in a table of the inline users and groups and the files'
// last good ones, and drops the cached checks of users whose hash changed
// or who are gone.
func (p *Plugin) publish() error {
	users, err := merge(p.inline, p.fileUsers)
	if err != nil {
		return err // checked when the file was read
	}
	t, err := p.newTable(users)
	if err != nil {
		return err
	}
	t.groups = joinGroups(p.inlineGroups, p.fileGroups)
	p.users.Store(t)
	p.cache.retain(func(user string) ([]byte, bool) {
		e, ok := t.users[user]
		return e.hash, ok
	})
	return nil
}

// poll runs reload and logs what happened: each new error once, at error
// level, counted as reload_errors (a missing or bad file is this
// backend's outage: the last good users stay), and each change of users
// at info.
func (p *Plugin) poll() {
	changed, err := p.reload()
	t := p.users.Load()
	n, g := len(t.users), len(t.groups)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil:
		if msg := err.Error(); msg != p.lastErr {
			p.lastErr = msg
			p.counts.reloadErrors.Add(1)
			p.log.Error().Err(err).Int("users", n).Msg("reload users: keeping the current ones")
		}
	case changed:
		p.lastErr = ""
		p.log.Info().Int("users_in_groups", g).Int("users", n).Msg("users reloaded")
	default:
		p.lastErr = ""
	}
}

// poller is the service that polls the htpasswd and groups files of one
// instance.
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
