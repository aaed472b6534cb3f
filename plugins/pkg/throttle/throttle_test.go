package throttle

import (
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	g := Gate{Period: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at             time.Duration
		wantOK         bool
		wantSuppressed int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2},
		{11 * time.Second, false, 0},
		{30 * time.Second, true, 1},
	}
	for i, st := range steps {
		ok, n := g.Pass(t0.Add(st.at))
		if ok != st.wantOK || n != st.wantSuppressed {
			t.Fatalf("step %d: got %v, %d; want %v, %d", i, ok, n, st.wantOK, st.wantSuppressed)
		}
	}
}
