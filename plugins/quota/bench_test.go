package quota

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/state"
)

// BenchmarkData is the Meter's cost per 128 KiB chunk (the default
// buffer_size; spliced chunks reach 1 MiB), with a user and a group
// budget on the embedded store: multiply ns/op by 8192 for the cost per
// GB at most. In parallel, channels of one user share its accounts.
func BenchmarkData(b *testing.B) {
	bk, err := state.OpenBolt(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	st := state.New(state.Config{Backend: bk, Log: zerolog.Nop()})
	defer st.Close(context.Background())
	opts := `end_live = true
[[plugin.limit]]
per = "user"
bytes = "1000000GiB"
period = "day"
[[plugin.limit]]
per = "group"
bytes = "1000000GiB"
window = "1h"
`
	p, err := load(b, opts, st)
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 128<<10)
	b.SetBytes(int64(len(chunk)))
	b.RunParallel(func(pb *testing.PB) {
		s := session(strconv.FormatInt(time.Now().UnixNano(), 36), "alice", "staff")
		if err := p.OnConnect(context.Background(), s); err != nil {
			b.Error(err)
			return
		}
		defer p.OnClose(s, plugins.Stats{})
		for pb.Next() {
			if _, err := p.OnBytes(s, plugins.Down, len(chunk)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkConnect is OnConnect and OnClose of a channel whose accounts
// are held already (the user's second channel on).
func BenchmarkConnect(b *testing.B) {
	p, _, _ := setup(b, daily)
	s0 := session("0", "alice")
	if err := p.OnConnect(context.Background(), s0); err != nil {
		b.Fatal(err)
	}
	defer p.OnClose(s0, plugins.Stats{})
	b.ResetTimer()
	for b.Loop() {
		s := session("1", "alice")
		if err := p.OnConnect(context.Background(), s); err != nil {
			b.Fatal(err)
		}
		p.OnClose(s, plugins.Stats{})
	}
}
