package relay

import (
	"context"
	"errors"
	"testing"
	"time"

	"ferry/plugins"
)

type ctxKey struct{}

// TestChannelSessionContext: the session's context carries the values of
// Start's, is open while the channel runs and done, with
// context.Canceled, once it has ended, whether Done was asked for before
// the end or after.
func TestChannelSessionContext(t *testing.T) {
	for _, tt := range []struct {
		name       string
		doneBefore bool // ask for Done while the channel runs
		end        func(*Channel)
		want       plugins.CloseReason
	}{
		{name: "done asked before close", doneBefore: true, end: (*Channel).Close, want: plugins.ReasonAdminClosed},
		{name: "done asked after close", end: (*Channel).Close, want: plugins.ReasonAdminClosed},
		{name: "shutdown", doneBefore: true, end: (*Channel).Shutdown, want: plugins.ReasonShutdown},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, ch := setup(t)
			parent := context.WithValue(context.WithoutCancel(context.Background()), ctxKey{}, "v")
			started := make(chan context.Context, 1)
			ch.Go = func(f func()) {
				started <- ch.Session.Context() // bound before the copies start
				go f()
			}
			done := runAsync(ch, parent)
			ctx := <-started
			if got := ctx.Value(ctxKey{}); got != "v" {
				t.Errorf("Value: got %v, want v", got)
			}
			if _, ok := ctx.Deadline(); ok {
				t.Error("Deadline: got one, want none (the parent has none)")
			}
			if ctx.Err() != nil {
				t.Fatalf("Err while the channel runs: %v", ctx.Err())
			}
			var d <-chan struct{}
			if tt.doneBefore {
				d = ctx.Done()
			}
			tt.end(ch)
			if res := <-done; res.Reason != tt.want {
				t.Errorf("reason: got %v, want %v", res.Reason, tt.want)
			}
			if d == nil {
				d = ctx.Done()
			}
			select {
			case <-d:
			case <-time.After(5 * time.Second):
				t.Fatal("Done still open after the channel ended")
			}
			if !errors.Is(ctx.Err(), context.Canceled) {
				t.Errorf("Err after the end: got %v, want context.Canceled", ctx.Err())
			}
		})
	}
}

// TestChannelShutdownBeforeStart: a channel the server shut down before
// it started ends at once, with the shutdown reason, though its context
// never ends.
func TestChannelShutdownBeforeStart(t *testing.T) {
	_, _, ch := setup(t)
	ch.Shutdown()
	res := ch.Run(context.WithoutCancel(context.Background()))
	if res.Reason != plugins.ReasonShutdown {
		t.Fatalf("reason: got %v, want %v", res.Reason, plugins.ReasonShutdown)
	}
	if ch.stopShutdown != nil {
		t.Error("a context that never ends was watched")
	}
}
