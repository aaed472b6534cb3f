package admin

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	"ferry/server"
)

// BenchmarkChannelClosed is the metrics' share of a channel's end.
func BenchmarkChannelClosed(b *testing.B) {
	a := New(nil, config.Admin{}, nil, zerolog.Nop())
	end := server.ChannelEnd{Listener: "proxy", Protocol: "connect", Reason: plugins.ReasonClientClosed, Up: 100, Down: 1000}
	b.ReportAllocs()
	for b.Loop() {
		a.ChannelClosed(end)
	}
}

// TestChannelClosedCounts: each reason counts in its own series, through
// the cached counters as through the first lookup.
func TestChannelClosedCounts(t *testing.T) {
	a := New(nil, config.Admin{}, nil, zerolog.Nop())
	for _, r := range []plugins.CloseReason{plugins.ReasonClientClosed, plugins.ReasonIdleTimeout, plugins.ReasonClientClosed} {
		a.ChannelClosed(server.ChannelEnd{Reason: r})
	}
	for _, tt := range []struct {
		label string
		want  float64
	}{{"client_closed", 2}, {"idle_timeout", 1}, {"upstream_closed", 0}} {
		var m dto.Metric
		if err := a.closed.WithLabelValues(tt.label).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.label, got, tt.want)
		}
	}
}
