package capture

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
)

// flushInterval bounds how long a packet waits in the buffer before it
// reaches the file, so a capture can be read while ferry runs.
const flushInterval = time.Second

// fileService is a capture file shared by the instances that name it. It
// opens on Start, appending a new pcapng section to a capture already
// there, and closes on Stop, after the last channel. Packets of all
// channels interleave in it; mu orders them, and also guards the state of
// every stream written to the file.
type fileService struct {
	path       string
	rotateSize int64 // 0: never rotate
	rotateKeep int
	log        zerolog.Logger

	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	size int64  // bytes in the current file, buffered ones included
	gen  uint64 // counts files opened; a stream names itself once per file
	err  error  // first write error; nothing is written after it

	stop chan struct{}
	done chan struct{}
}

var _ plugins.Service = (*fileService)(nil)

// Start opens the file and starts the periodic flush.
func (s *fileService) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(false); err != nil {
		return err
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.flushLoop(s.stop, s.done)
	return nil
}

// Stop flushes and closes the file.
func (s *fileService) Stop(context.Context) error {
	s.mu.Lock()
	stop, done := s.stop, s.done
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeFile()
}

func (s *fileService) flushLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.mu.Lock()
			if s.w != nil && s.w.Buffered() > 0 && s.err == nil {
				s.fail(s.w.Flush())
			}
			s.mu.Unlock()
		}
	}
}

// open opens s.path and writes a section header. Unless truncate is set,
// a capture already in the file is kept and the new section appended;
// a file that is not pcapng is refused rather than spoiled.
func (s *fileService) open(truncate bool) error {
	flags := os.O_RDWR | os.O_CREATE | os.O_APPEND
	if truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(s.path, flags, 0o640)
	if err != nil {
		return fmt.Errorf("open capture file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open capture file: %w", err)
	}
	if size := fi.Size(); size > 0 {
		var magic [4]byte
		if _, err := f.ReadAt(magic[:], 0); err != nil || le.Uint32(magic[:]) != blockSHB {
			f.Close()
			return fmt.Errorf("open capture file %s: not empty and not a pcapng file", s.path)
		}
		s.size = size
	} else {
		s.size = 0
	}
	s.f = f
	s.w = bufio.NewWriterSize(f, 256<<10)
	s.gen++
	s.err = nil
	s.w.Write(header) // an error sticks in the bufio.Writer until Flush
	s.size += int64(len(header))
	return nil
}

// closeFile flushes and closes the current file; it returns the first
// write error of the file's life, if any.
func (s *fileService) closeFile() error {
	if s.f == nil {
		return nil
	}
	err := s.err
	if err == nil {
		err = s.w.Flush()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f, s.w = nil, nil
	if err != nil {
		return fmt.Errorf("write capture file %s: %w", s.path, err)
	}
	return nil
}

// rotate moves the full file to path.1 (older ones one number up,
// dropping those past rotateKeep) and opens a new one.
func (s *fileService) rotate() error {
	if err := s.closeFile(); err != nil {
		return err
	}
	if err := shiftRotated(s.path, s.rotateKeep); err != nil {
		return err
	}
	return s.open(true)
}

// shiftRotated moves the file at path to path.1, older ones one number
// up, dropping those past keep; with keep 0 it leaves path for the
// caller to truncate. pcapng and HAR files rotate alike.
func shiftRotated(path string, keep int) error {
	if keep == 0 {
		return nil
	}
	name := func(i int) string { return path + "." + strconv.Itoa(i) }
	if err := os.Remove(name(keep)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotate capture file: %w", err)
	}
	for i := keep - 1; i >= 1; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate capture file: %w", err)
		}
	}
	if err := os.Rename(path, name(1)); err != nil {
		return fmt.Errorf("rotate capture file: %w", err)
	}
	return nil
}

// fail records the first write error and logs it once: capturing stops,
// the channels go on.
func (s *fileService) fail(err error) {
	if err == nil || s.err != nil {
		return
	}
	s.err = err
	s.log.Error().Err(err).Str("file", s.path).Msg("capture stopped: cannot write the capture file")
}

// writable reports whether packets can be written; call with mu held.
func (s *fileService) writable() bool { return s.f != nil && s.err == nil }

// writePacket writes one packet of st as an Enhanced Packet Block: hdr
// (IP and TCP headers) then payload. The first packet of a stream in each
// file carries the stream's description as a comment, so a rotated file
// still names its channels. Call with mu held.
func (s *fileService) writePacket(st *stream, ts time.Time, hdr, payload []byte, comments []string) {
	if !s.writable() {
		return
	}
	n := len(hdr) + len(payload)
	if s.rotateSize > 0 && s.size+int64(epbLen(n, comments)) > s.rotateSize &&
		s.size > int64(len(header)) {
		if err := s.rotate(); err != nil {
			s.fail(err)
			return
		}
	}
	if st.gen != s.gen {
		st.gen = s.gen
		comments = append([]string{st.intro}, comments...)
	}
	head := epbHead(ts, n, comments)
	tail := epbTail(n, comments)
	s.write(head)
	s.write(hdr)
	s.write(payload)
	s.write(tail)
	s.size += int64(len(head) + n + len(tail))
}

func (s *fileService) write(b []byte) {
	if s.err != nil {
		return
	}
	_, err := s.w.Write(b)
	s.fail(err)
}

// sameSettings reports whether another instance naming this file asks for
// the same rotation.
func (s *fileService) sameSettings(size int64, keep int) bool {
	return s.rotateSize == size && s.rotateKeep == keep
}
