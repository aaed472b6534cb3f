package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
)

// waitingConn is a ReadWaiter that logs its calls.
type waitingConn struct {
	net.Conn
	calls   []string
	waitErr error
}

func (c *waitingConn) WaitRead() error {
	c.calls = append(c.calls, "wait")
	return c.waitErr
}

func (c *waitingConn) Read(p []byte) (int, error) {
	c.calls = append(c.calls, "read")
	return c.Conn.Read(p)
}

// TestChunkReaderWaits: a source that is no socket but a ReadWaiter is
// waited on before each Read, so no buffer is taken while it is silent;
// its error ends the reading without a Read.
func TestChunkReaderWaits(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	src := &waitingConn{Conn: b}
	go func() {
		a.Write([]byte("one"))
		a.Write([]byte("two"))
		a.Close()
	}()
	rd := newChunkReader(src, NewBufferPool(512), 0)
	var got []string
	for range 10 {
		bufp, n, err := rd.next()
		if n > 0 {
			got = append(got, string((*bufp)[:n]))
		}
		if err != nil {
			if err != io.EOF {
				t.Fatalf("next: %v", err)
			}
			break
		}
	}
	if want := "[one two]"; fmt.Sprint(got) != want {
		t.Errorf("chunks %v, want %s", got, want)
	}
	for i, c := range src.calls {
		if want := [2]string{"wait", "read"}[i%2]; c != want {
			t.Fatalf("calls %v: want each read after a wait", src.calls)
		}
	}

	boom := errors.New("boom")
	src = &waitingConn{Conn: b, waitErr: boom}
	if bufp, _, err := newChunkReader(src, NewBufferPool(512), 0).next(); !errors.Is(err, boom) || bufp != nil {
		t.Errorf("next after a failed wait: buffer %v, error %v; want no buffer and the wait's error", bufp != nil, err)
	}
	if len(src.calls) != 1 {
		t.Errorf("calls %v, want the wait alone", src.calls)
	}
}
