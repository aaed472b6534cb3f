// Package safefile reads the files an operator's configuration names
// (the configuration itself, certificates and keys, password files,
// domain lists) so that a wrong or hostile path cannot hurt the process
// reading it: only regular files are read, never more than a cap, and
// never for longer than a deadline.
//
//	pem, err := safefile.ReadFile(path, safefile.MaxCert)
//	// "/dev/zero: not a regular file but a character device"
//	// "big.pem: 2.0 MiB, over the 1 MiB limit for this file"
//
// A FIFO, device, socket or directory is refused at once, without
// blocking: the file is opened with O_NONBLOCK (on Unix) and checked with
// fstat before any read. The cap is checked against the size fstat
// reports and again while reading (files under /proc report a size of
// 0). The deadline guards regular files whose reads can block (a hung
// network or FUSE file system): the read goes on in a goroutine, which is
// left to finish on its own when the deadline passes.
//
// It does not watch files for changes, and does not limit how often a
// file is read.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// Caps for ReadFile.
const (
	// MaxList caps the configuration and lists: password files, domain
	// lists.
	MaxList int64 = 64 << 20
	// MaxCert caps PEM certificates and keys.
	MaxCert int64 = 1 << 20
)

// Timeout is how long ReadFile may take.
const Timeout = 10 * time.Second

var (
	// ErrNotRegular is returned for a path that is not a regular file.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge is returned for a file over its cap.
	ErrTooLarge = errors.New("over the size limit")
)

// ReadFile returns the content of the regular file at path, refusing a
// file larger than limit bytes and one that takes longer than Timeout.
// Errors name the path, and the cap when it is the cause.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := open(path, limit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAll(f, f.size, path, f.deadline)
}

// file is a regular file open for reading. Reads fail with an error
// wrapping ErrTooLarge past its cap, and with one wrapping
// os.ErrDeadlineExceeded once Timeout has passed since open.
type file struct {
	f        *os.File
	path     string
	max      int64
	n        int64 // bytes read so far
	size     int64 // as fstat said
	deadline time.Time
}

// open opens the regular file at path for reading.
func open(path string, limit int64) (*file, error) {
	// openFlags: opening a FIFO without a writer, or some devices, would
	// otherwise block here, before fstat can tell what the path is.
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, err // *fs.PathError: names the path
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w but %s", path, ErrNotRegular, kind(fi.Mode()))
	}
	if fi.Size() > limit {
		f.Close()
		return nil, tooLarge(path, fi.Size(), limit)
	}
	return &file{f: f, path: path, max: limit, size: fi.Size(), deadline: time.Now().Add(Timeout)}, nil
}

// Read implements io.Reader.
func (r *file) Read(p []byte) (int, error) {
	if time.Now().After(r.deadline) {
		return 0, fmt.Errorf("read %s: %w after %v", r.path, os.ErrDeadlineExceeded, Timeout)
	}
	if room := r.max + 1 - r.n; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := r.f.Read(p)
	r.n += int64(n)
	if r.n > r.max {
		return n, tooLarge(r.path, r.n, r.max)
	}
	return n, err
}

// Close closes the file.
func (r *file) Close() error { return r.f.Close() }

// readAll reads r to its end in a goroutine, so that a read that blocks
// returns an error at the deadline instead of blocking the caller.
// size, when known, sizes the buffer.
func readAll(r io.Reader, size int64, path string, deadline time.Time) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		// One more byte than the size, so that the end is seen without
		// growing the buffer.
		b := make([]byte, 0, size+1)
		for {
			if len(b) == cap(b) {
				b = append(b, 0)[:len(b)]
			}
			n, err := r.Read(b[len(b):cap(b)])
			b = b[:len(b)+n]
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				done <- result{b, err}
				return
			}
		}
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case res := <-done:
		return res.b, res.err
	case <-t.C:
		return nil, fmt.Errorf("read %s: %w", path, os.ErrDeadlineExceeded)
	}
}

func tooLarge(path string, size, limit int64) error {
	what := FormatSize(size)
	if size == limit+1 { // found while reading: the true size is unknown
		what = "more than " + FormatSize(limit)
	}
	return fmt.Errorf("%s: %s, %w of %s for this file", path, what, ErrTooLarge, FormatSize(limit))
}

// FormatSize writes n bytes as "64 MiB", "1.5 KiB" or "12 bytes".
func FormatSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// kind names what a non-regular file is, for errors.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeIrregular != 0:
		return "an irregular file"
	}
	return "of type " + m.Type().String()
}
