package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"ferry/scripts/internal/load"
)

// The targets at the far end of ferry, all in this process.
//
// The stream target reads commands, one after another on a connection,
// so that a tunnel can be reused:
//
//	'E' n:uint16 + n bytes   echo the n bytes
//	'U' n:uint64 + n bytes   read n bytes of the pattern, answer 'K' (or 'X' if they differ)
//	'D' n:uint64             write n bytes of the pattern
//	'R' n:uint64             write n bytes of the pattern, then reset the connection
//	'C'                      close
//
// Integers are big-endian; the pattern is byte(offset % 251) from the
// start of each transfer, so a lost, repeated or changed byte shows.
// The target closes first where it can ('C', and after a 'D' client's
// close): the side that closes first keeps the TIME_WAIT, and one on the
// target's own port holds no ephemeral port.
//
// The reset target accepts and resets at once: a target that refuses
// service after the connection is up. The HTTP target serves plain HTTP
// for ferry's http:// proxying.

const chunk = 256 << 10

// pattern holds chunk bytes of the pattern from any offset mod 251.
var pattern = func() []byte {
	b := make([]byte, chunk+251)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

// patternAt is the n (<= chunk) bytes of the pattern at offset off.
func patternAt(off int64, n int) []byte {
	s := int(off % 251)
	return pattern[s : s+n]
}

// serveStream runs the stream target's commands on c.
func serveStream(c net.Conn) {
	br := bufio.NewReaderSize(c, 64<<10)
	var h [8]byte
	for range 1 << 20 {
		cmd, err := br.ReadByte()
		if err != nil {
			return
		}
		switch cmd {
		case 'E':
			if _, err := io.ReadFull(br, h[:2]); err != nil {
				return
			}
			buf := make([]byte, binary.BigEndian.Uint16(h[:2]))
			if _, err := io.ReadFull(br, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		case 'U':
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return
			}
			n := int64(binary.BigEndian.Uint64(h[:]))
			buf := make([]byte, chunk)
			same := true
			for off := int64(0); off < n; {
				k, err := br.Read(buf[:min(int64(len(buf)), n-off)])
				if same && !bytes.Equal(buf[:k], patternAt(off, k)) {
					same = false
				}
				off += int64(k)
				if err != nil {
					return
				}
			}
			ack := []byte{'K'}
			if !same {
				ack[0] = 'X'
			}
			if _, err := c.Write(ack); err != nil {
				return
			}
		case 'D', 'R':
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return
			}
			n := int64(binary.BigEndian.Uint64(h[:]))
			if err := writePattern(c, n); err != nil {
				return
			}
			if cmd == 'R' {
				load.Reset(c)
				return
			}
		default: // 'C', or a command we do not know
			return
		}
	}
}

// writePattern writes n bytes of the pattern to w.
func writePattern(w io.Writer, n int64) error {
	for off := int64(0); off < n; {
		k, err := w.Write(patternAt(off, int(min(chunk, n-off))))
		off += int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

// serveReset refuses service: it resets the connection at once.
func serveReset(c net.Conn) { load.Reset(c) }

// httpHandler is the HTTP target: GET /b?n=N answers N bytes of the
// pattern; POST /p checks that the body is the pattern and answers its
// length.
func httpHandler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /b", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 || n > chunk {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Write(patternAt(0, int(n)))
	})
	m.HandleFunc("POST /p", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, chunk+1))
		if err != nil || len(body) > chunk || !bytes.Equal(body, patternAt(0, len(body))) {
			http.Error(w, "body is not the pattern", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d", len(body))
	})
	return m
}
