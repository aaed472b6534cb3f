package server

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestRequestCtx checks that the lazily made context says what a
// context.WithCancel of its parent would, whatever the order of the
// exchange's end, the parent's end and the first Done.
func TestRequestCtx(t *testing.T) {
	type step int
	const (
		done step = iota // ask for Done, before or after the rest
		end              // the exchange ends
		stop             // the parent ends, with DeadlineExceeded
	)
	tests := []struct {
		name  string
		steps []step
		want  error
	}{
		{"running", nil, nil},
		{"running, Done asked", []step{done}, nil},
		{"ended", []step{end}, context.Canceled},
		{"ended, Done after", []step{end, done}, context.Canceled},
		{"ended, Done before", []step{done, end}, context.Canceled},
		{"ended twice", []step{done, end, end}, context.Canceled},
		{"parent ended", []step{stop}, context.DeadlineExceeded},
		{"parent ended, Done after", []step{stop, done}, context.DeadlineExceeded},
		{"parent ended, Done before", []step{done, stop}, context.DeadlineExceeded},
		{"parent then exchange", []step{stop, end, done}, context.DeadlineExceeded},
		{"exchange then parent", []step{end, stop, done}, context.Canceled},
		{"exchange then parent, Done first", []step{done, end, stop}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The parent is a timer context, as the server's is a cancel
			// context: its end reaches contexts made from it at once.
			// In the cases where it ends, it ends by its deadline, so that
			// its error (DeadlineExceeded) tells its end from the
			// exchange's (Canceled).
			life := time.Hour
			if slices.Contains(tt.steps, stop) {
				life = 20 * time.Millisecond
			}
			parent, cancel := context.WithTimeout(context.Background(), life)
			defer cancel()
			x := &requestCtx{parent: parent}
			for _, s := range tt.steps {
				switch s {
				case done:
					_ = x.Done()
				case end:
					x.end()
				case stop:
					<-parent.Done()
				}
			}
			if tt.want == nil {
				select {
				case <-x.Done():
					t.Fatal("Done is closed while the exchange and its parent run")
				default:
				}
				checkErr(t, "Err", x.Err(), nil)
				return
			}
			// A parent's end reaches the contexts made from it just after
			// its own Done closes (context.cancelCtx closes Done, then
			// cancels its children), so wait for Done before Err, as any
			// caller of a context would.
			select {
			case <-x.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("Done is still open 5s after %v", tt.want)
			}
			checkErr(t, "Err after Done", x.Err(), tt.want)
		})
	}
}

func checkErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}
