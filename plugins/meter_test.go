package plugins

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// capMeter keeps at most max bytes of each chunk (max < 0: all), or
// fails with err, or panics; it records the sizes it was told.
type capMeter struct {
	name  string
	dirs  Directions // zero: not a DataDirector's narrowing, both
	max   int
	err   error
	panic bool
	told  []int
}

func (m *capMeter) Name() string { return m.name }
func (m *capMeter) OnBytes(_ *Session, _ Direction, n int) (int, error) {
	m.told = append(m.told, n)
	if m.panic {
		panic("meter broke")
	}
	if m.max >= 0 {
		n = min(n, m.max)
	}
	return n, m.err
}

type directedMeter struct{ capMeter }

func (m *directedMeter) DataDirections() Directions { return m.dirs }

// doubler is a data hook that changes the chunk's length: Meters count its
// output.
type doubler struct{}

func (doubler) Name() string                                 { return "doubler" }
func (doubler) OnWrite(_ *Session, p []byte) ([]byte, error) { return append(p, p...), nil }

// TestChainMeter: Meters count what the data hooks deliver, each sees
// what the earlier kept, a cut is ErrClose with the kept bytes, errors
// and panics come wrapped with the plugin's name, and a DataDirector
// narrows a Meter's directions.
func TestChainMeter(t *testing.T) {
	tests := []struct {
		name     string
		meters   []*capMeter
		hooks    bool // a doubling Writer before the Meters
		wantOut  int
		wantErr  string // "" none, "close" ErrClose, else in the HookError
		wantTold [][]int
	}{
		{name: "all kept", meters: []*capMeter{{name: "a", max: -1}, {name: "b", max: -1}}, wantOut: 10, wantTold: [][]int{{10}, {10}}},
		{name: "cut", meters: []*capMeter{{name: "a", max: 4}, {name: "b", max: -1}}, wantOut: 4, wantErr: "close", wantTold: [][]int{{10}, nil}},
		{name: "second cuts", meters: []*capMeter{{name: "a", max: -1}, {name: "b", max: 3}}, wantOut: 3, wantErr: "close", wantTold: [][]int{{10}, {10}}},
		{name: "close keeps", meters: []*capMeter{{name: "a", max: 6, err: ErrClose}}, wantOut: 6, wantErr: "close", wantTold: [][]int{{10}}},
		{name: "error", meters: []*capMeter{{name: "a", max: -1, err: errors.New("store gone")}}, wantOut: 10, wantErr: "plugin a: OnBytes: store gone", wantTold: [][]int{{10}}},
		{name: "panic", meters: []*capMeter{{name: "a", max: -1, panic: true}}, wantOut: 0, wantErr: "plugin a: OnBytes: panic: meter broke", wantTold: [][]int{{10}}},
		{name: "after hooks", meters: []*capMeter{{name: "a", max: -1}}, hooks: true, wantOut: 20, wantTold: [][]int{{20}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps []Plugin
			if tt.hooks {
				ps = append(ps, doubler{})
			}
			for _, m := range tt.meters {
				ps = append(ps, m)
			}
			c := NewChain(ps)
			if !c.HasData(Down) || !c.HasMeters(Down) || c.SeesData(Down) != tt.hooks {
				t.Fatalf("HasData %v, HasMeters %v, SeesData %v", c.HasData(Down), c.HasMeters(Down), c.SeesData(Down))
			}
			out, err := c.Data(&Session{}, Down, make([]byte, 10))
			checkMeterErr(t, err, tt.wantErr)
			if len(out) != tt.wantOut {
				t.Errorf("out %d bytes, want %d", len(out), tt.wantOut)
			}
			for i, m := range tt.meters {
				if !slices.Equal(m.told, tt.wantTold[i]) {
					t.Errorf("meter %s told %v, want %v", m.name, m.told, tt.wantTold[i])
				}
			}
		})
	}
}

func checkMeterErr(t *testing.T, err error, want string) {
	t.Helper()
	var he *HookError
	switch {
	case want == "" && err != nil:
		t.Errorf("err %v, want none", err)
	case want == "close" && err != ErrClose:
		t.Errorf("err %v, want ErrClose", err)
	case want != "" && want != "close" && (!errors.As(err, &he) || !strings.Contains(err.Error(), want)):
		t.Errorf("err %v, want a HookError %q", err, want)
	}
}

// TestMeterDirections: a DataDirector narrows its Meter; a direction
// with none has no data for the chain, and End's output is metered.
func TestMeterDirections(t *testing.T) {
	m := &directedMeter{capMeter{name: "d", dirs: UpData, max: -1}}
	c := NewChain([]Plugin{m})
	if !c.HasMeters(Up) || c.HasMeters(Down) || c.HasData(Down) {
		t.Fatalf("up %v, down %v: want a Meter up only", c.HasMeters(Up), c.HasMeters(Down))
	}
	if MeterDirectionsOf(doubler{}) != NoData || MeterDirectionsOf(m) != UpData {
		t.Errorf("MeterDirectionsOf: %v, %v", MeterDirectionsOf(doubler{}), MeterDirectionsOf(m))
	}
	c.Data(&Session{}, Down, make([]byte, 5))
	c.Data(&Session{}, Up, make([]byte, 7))
	if !slices.Equal(m.told, []int{7}) {
		t.Errorf("told %v, want [7]", m.told)
	}
}

type chunkCap struct{ n int }

func (chunkCap) Name() string    { return "cap" }
func (c chunkCap) MaxChunk() int { return c.n }

// TestChainMaxChunk: the smallest ChunkLimiter's cap wins; 0 caps
// nothing.
func TestChainMaxChunk(t *testing.T) {
	tests := []struct {
		ps   []Plugin
		want int
	}{
		{nil, 0},
		{[]Plugin{chunkCap{0}}, 0},
		{[]Plugin{chunkCap{256 << 10}, chunkCap{0}, chunkCap{64 << 10}}, 64 << 10},
		{[]Plugin{doubler{}, chunkCap{1 << 20}}, 1 << 20},
	}
	for _, tt := range tests {
		if got := NewChain(tt.ps).MaxChunk(); got != tt.want {
			t.Errorf("%v: MaxChunk %d, want %d", tt.ps, got, tt.want)
		}
	}
	if (*Chain)(nil).MaxChunk() != 0 {
		t.Error("nil chain: want no cap")
	}
}
