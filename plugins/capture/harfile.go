package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/rs/zerolog"

	"ferry/plugins"
)

// A HAR file is one JSON document that stays valid after every entry:
// the head, the entries separated by ",\n", and the tail. An entry is
// written over the old tail together with a new tail, in one write, so
// a reader never sees the document open (short of a crash inside that
// write).
const (
	harPrefix = `{"log":{"version":"1.2","creator":{"name":"ferry"`
	harTail   = "\n]}}\n"
)

// harHead is the document's start up to the entries array's "[".
func harHead(version string) []byte {
	return fmt.Appendf(nil, `%s,"version":%q},"pages":[],"entries":[`, harPrefix, version)
}

// harService is a HAR file shared by the capture instances that name it.
// Appends run under mu and, on unix, under an flock of the file, so the
// writers of an old and a new configuration (a reload) take turns; each
// append finds where the entries end from the file itself.
type harService struct {
	path       string
	version    string
	rotateSize int64 // 0: never rotate
	rotateKeep int
	log        zerolog.Logger

	mu  sync.Mutex
	f   *os.File
	err error // first failure; nothing is written after it
	// size is the file's size after this service's last write, so that
	// an append that finds it unchanged (no other writer came between)
	// need not read the tail again; -1 when unknown.
	size  int64
	empty bool // the document had no entry at size
}

var _ plugins.Service = (*harService)(nil)

// Start opens the file: a new or empty one gets an empty document, a
// HAR file this plugin wrote goes on with its entries, anything else is
// refused rather than spoiled.
func (h *harService) Start(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.open(); err != nil {
		return err
	}
	if err := h.locked(func(fi os.FileInfo) error { _, _, err := h.end(fi); return err }); err != nil {
		h.f.Close()
		h.f = nil
		return err
	}
	return nil
}

// Stop closes the file; it returns the failure that stopped writing, if
// any.
func (h *harService) Stop(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var err error
	if h.f != nil {
		err = h.f.Close()
		h.f = nil
	}
	if h.err != nil {
		err = h.err
	}
	if err != nil {
		return fmt.Errorf("write HAR file %s: %w", h.path, err)
	}
	return nil
}

func (h *harService) open() error {
	f, err := os.OpenFile(h.path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open HAR file: %w", err)
	}
	h.f, h.size = f, -1
	return nil
}

// locked runs fn with the file locked against other writers, on the file
// now at h.path (fi is its state): when another writer rotated it away,
// it opens the new one first. Call with mu held.
func (h *harService) locked(fn func(fi os.FileInfo) error) error {
	for range 8 { // a rotation per try; more means something else is wrong
		if err := lockFile(h.f); err != nil {
			return fmt.Errorf("lock HAR file: %w", err)
		}
		fi, moved, err := h.moved()
		if err == nil && !moved {
			err = fn(fi)
			if uerr := unlockFile(h.f); err == nil && uerr != nil {
				err = fmt.Errorf("unlock HAR file: %w", uerr)
			}
			return err
		}
		unlockFile(h.f)
		if err != nil {
			return err
		}
		h.f.Close()
		if err := h.open(); err != nil {
			h.f = nil
			return err
		}
	}
	return errors.New("HAR file keeps moving: rotated by another writer at every try")
}

// moved returns the open file's state and whether h.path no longer
// names it.
func (h *harService) moved() (os.FileInfo, bool, error) {
	fi, err := h.f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("stat HAR file: %w", err)
	}
	pi, err := os.Stat(h.path)
	if errors.Is(err, os.ErrNotExist) {
		return fi, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("stat HAR file: %w", err)
	}
	return fi, !os.SameFile(fi, pi), nil
}

// end returns the offset where the next entry goes (the tail's) and
// whether the document has no entry yet; an empty file gets the empty
// document first. fi is the file's state; the tail is read only when
// the size is not the one this service left. Call with the file locked.
func (h *harService) end(fi os.FileInfo) (off int64, empty bool, err error) {
	size := fi.Size()
	if size == h.size && size > 0 {
		return size - int64(len(harTail)), h.empty, nil
	}
	if size == 0 {
		doc := append(harHead(h.version), harTail...)
		if _, err := h.f.WriteAt(doc, 0); err != nil {
			return 0, false, fmt.Errorf("write HAR file: %w", err)
		}
		h.size, h.empty = int64(len(doc)), true
		return h.size - int64(len(harTail)), true, nil
	}
	head := make([]byte, len(harPrefix))
	last := make([]byte, len(harTail)+1)
	if size < int64(len(harPrefix)+len(last)) {
		return 0, false, h.notOurs()
	}
	if _, err := h.f.ReadAt(head, 0); err != nil {
		return 0, false, fmt.Errorf("read HAR file: %w", err)
	}
	if _, err := h.f.ReadAt(last, size-int64(len(last))); err != nil {
		return 0, false, fmt.Errorf("read HAR file: %w", err)
	}
	if string(head) != harPrefix || string(last[1:]) != harTail {
		return 0, false, h.notOurs()
	}
	// Every document ends with the tail, so a size seen again can only
	// be the same place: another writer that came between changed it.
	h.size, h.empty = size, last[0] == '['
	return size - int64(len(harTail)), h.empty, nil
}

func (h *harService) notOurs() error {
	return fmt.Errorf("HAR file %s: not empty and not a HAR file that ferry writes (it must start %s and end %q)", h.path, harPrefix, harTail)
}

// add appends one entry (a JSON object). A failure stops the file's
// capture with one error line; the flows go on.
func (h *harService) add(entry []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil || h.err != nil {
		return
	}
	err := h.locked(func(fi os.FileInfo) error { return h.addLocked(fi, entry) })
	if err != nil {
		h.err = err
		h.log.Error().Err(err).Str("file", h.path).Msg("HAR capture stopped: cannot write the HAR file")
	}
}

func (h *harService) addLocked(fi os.FileInfo, entry []byte) error {
	off, empty, err := h.end(fi)
	if err != nil {
		return err
	}
	if h.rotateSize > 0 && !empty && off+int64(len(entry)+2+len(harTail)) > h.rotateSize {
		if off, empty, err = h.rotate(); err != nil {
			return err
		}
	}
	var b bytes.Buffer
	b.Grow(len(entry) + 2 + len(harTail))
	if empty {
		b.WriteString("\n")
	} else {
		b.WriteString(",\n")
	}
	b.Write(entry)
	b.WriteString(harTail)
	if _, err := h.f.WriteAt(b.Bytes(), off); err != nil {
		h.size = -1 // a short write leaves the file in a state to read again
		return fmt.Errorf("write HAR file: %w", err)
	}
	h.size, h.empty = off+int64(b.Len()), false
	return nil
}

// rotate moves the full file away as pcapng files are (FILE.1...), or
// empties it with rotate_keep 0, and starts a new document. The old
// file stays locked until it is closed, so a writer waiting on it finds
// it moved. Call with mu held and the file locked.
func (h *harService) rotate() (int64, bool, error) {
	if h.rotateKeep == 0 {
		if err := h.f.Truncate(0); err != nil {
			return 0, false, fmt.Errorf("rotate HAR file: %w", err)
		}
		return h.restart()
	}
	if err := shiftRotated(h.path, h.rotateKeep); err != nil {
		return 0, false, err
	}
	old := h.f
	if err := h.open(); err != nil {
		h.f = old // closed by Stop; nothing more is written
		return 0, false, err
	}
	if err := lockFile(h.f); err != nil {
		return 0, false, fmt.Errorf("lock HAR file: %w", err)
	}
	old.Close() // releases its lock
	return h.restart()
}

// restart starts the empty document in the file just emptied or made.
func (h *harService) restart() (int64, bool, error) {
	fi, err := h.f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("stat HAR file: %w", err)
	}
	h.size = -1
	return h.end(fi)
}

// sameSettings reports whether another instance naming this file asks
// for the same rotation.
func (h *harService) sameSettings(size int64, keep int) bool {
	return h.rotateSize == size && h.rotateKeep == keep
}
