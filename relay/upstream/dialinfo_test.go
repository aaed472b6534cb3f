package upstream

import (
	"context"
	"testing"
)

func TestDialInfoPathAndRelease(t *testing.T) {
	info := &DialInfo{}
	if info.Path() != "" {
		t.Fatalf("empty chain = %q", info.Path())
	}
	info.addHop("a")
	m := info.mark()
	info.addHop("b")
	info.addHop("c")
	if got := info.Path(); got != "a>b>c" {
		t.Fatalf("Path = %q", got)
	}
	info.rewind(m)
	if got := info.Path(); got != "a" {
		t.Fatalf("Chain after rewind = %q", got)
	}
	var calls []int
	info.onRelease(func() { calls = append(calls, 1) })
	info.onRelease(func() { calls = append(calls, 2) })
	info.Release()
	info.Release()
	if len(calls) != 2 || calls[0] != 1 || calls[1] != 2 {
		t.Fatalf("release calls = %v, want [1 2] once", calls)
	}

	// A dial without DialInfo: every method is a no-op.
	var none *DialInfo
	none.addHop("x")
	none.rewind(none.mark())
	if none.onRelease(func() {}) {
		t.Fatal("onRelease on nil DialInfo reported it will run")
	}
	if dialInfoFrom(context.Background()) != nil {
		t.Fatal("dialInfoFrom(Background) != nil")
	}
	if dialInfoFrom(WithDialInfo(context.Background(), info)) != info {
		t.Fatal("WithDialInfo did not carry info")
	}
}
