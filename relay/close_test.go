package relay

import (
	"context"
	"io"
	"testing"

	"ferry/plugins"
)

func TestChannelCloseAndBytes(t *testing.T) {
	for _, tt := range []struct {
		name string
		ps   []plugins.Plugin
	}{
		{name: "fast path"},
		{name: "hooked", ps: []plugins.Plugin{upper{}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, target, ch := setup(t, tt.ps...)
			done := runAsync(ch, context.Background())
			if _, err := client.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(target, buf); err != nil {
				t.Fatal(err)
			}
			if _, err := target.Write([]byte("pong!")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(client, buf[:4]); err != nil {
				t.Fatal(err)
			}
			ch.Close()
			res := <-done
			if res.Reason != plugins.ReasonAdminClosed {
				t.Fatalf("reason: got %v, want %v", res.Reason, plugins.ReasonAdminClosed)
			}
			up, down := ch.Bytes()
			if up != 4 || down < 4 {
				t.Fatalf("Bytes: got up %d down %d, want 4 and at least 4", up, down)
			}
			ch.Close() // a second Close is harmless
		})
	}
}

func TestChannelCloseBeforeRun(t *testing.T) {
	_, _, ch := setup(t)
	ch.Close()
	res := ch.Run(context.Background())
	if res.Reason != plugins.ReasonAdminClosed {
		t.Fatalf("reason: got %v, want %v", res.Reason, plugins.ReasonAdminClosed)
	}
}
