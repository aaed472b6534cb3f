package plugins

import (
	"errors"
	"slices"
	"testing"
)

// directed is a recorder with both data hooks and their end hooks that
// declares which directions it wants.
type directed struct {
	recorder
	dirs Directions
}

func (d *directed) DataDirections() Directions { return d.dirs }
func (d *directed) OnReadEnd(*Session) ([]byte, error) {
	d.note("readend")
	return []byte("R" + d.name), nil
}
func (d *directed) OnWriteEnd(*Session) ([]byte, error) {
	d.note("writeend")
	return []byte("W" + d.name), nil
}

// TestDataDirections: a DataDirector's chain calls only the directions it
// declares, among the hooks it has.
func TestDataDirections(t *testing.T) {
	tests := []struct {
		name     string
		dirs     Directions
		wantUp   bool
		wantDown bool
		wantLog  []string
	}{
		{"none", NoData, false, false, nil},
		{"up", UpData, true, false, []string{"d.read", "d.readend"}},
		{"down", DownData, false, true, []string{"d.write", "d.writeend"}},
		{"both", BothData, true, true, []string{"d.read", "d.readend", "d.write", "d.writeend"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			p := &directed{recorder: recorder{name: "d", log: &log}, dirs: tt.dirs}
			if got := DataDirectionsOf(p); got != tt.dirs {
				t.Fatalf("DataDirectionsOf: got %v, want %v", got, tt.dirs)
			}
			c := NewChain([]Plugin{p})
			if c.HasData(Up) != tt.wantUp || c.HasData(Down) != tt.wantDown {
				t.Fatalf("got up=%v down=%v, want %v %v", c.HasData(Up), c.HasData(Down), tt.wantUp, tt.wantDown)
			}
			s := &Session{}
			for _, d := range []Direction{Up, Down} {
				out, err := c.Data(s, d, []byte(">"))
				want := ">"
				if c.HasData(d) {
					want = ">d"
				}
				if err != nil || string(out) != want {
					t.Fatalf("Data(%v): got %q, %v, want %q", d, out, err, want)
				}
				if _, err := c.End(s, d); err != nil {
					t.Fatalf("End(%v): %v", d, err)
				}
			}
			if !slices.Equal(log, tt.wantLog) {
				t.Fatalf("calls: got %v, want %v", log, tt.wantLog)
			}
		})
	}
}

// TestDataDirectionsNeedHooks: a declared direction without its hook is
// not hooked; a plugin that declares nothing hooks what it has.
func TestDataDirectionsNeedHooks(t *testing.T) {
	type writeOnly struct {
		connectOnly
		Writer
	}
	tests := []struct {
		name string
		p    Plugin
		want Directions
	}{
		{"no hooks", connectOnly{"c"}, NoData},
		{"undeclared", &recorder{name: "r", log: new([]string)}, BothData},
		{"writer only", writeOnly{connectOnly{"w"}, &recorder{name: "r", log: new([]string)}}, DownData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DataDirectionsOf(tt.p); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestEndOrderAndErrors: End runs a direction's hooks in its order, each
// getting what the earlier ones released, and names the end hook in a
// HookError.
func TestEndOrderAndErrors(t *testing.T) {
	var log []string
	a := &directed{recorder: recorder{name: "a", log: &log}, dirs: BothData}
	b := &directed{recorder: recorder{name: "b", log: &log}, dirs: BothData}
	c := NewChain([]Plugin{a, b})
	s := &Session{}
	up, err := c.End(s, Up)
	if err != nil || string(up) != "RabRb" {
		t.Fatalf("End(Up): got %q, %v, want RabRb", up, err)
	}
	down, err := c.End(s, Down)
	if err != nil || string(down) != "WbaWa" {
		t.Fatalf("End(Down): got %q, %v, want WbaWa", down, err)
	}
	b.fail = "writeend"
	_, err = c.End(s, Down)
	var he *HookError
	if !errors.As(err, &he) || he.Plugin != "b" || he.Hook != "OnWriteEnd" {
		t.Fatalf("got %v, want a HookError from b's OnWriteEnd", err)
	}
}
