package plugins

// Direction is one way data flows through a channel. The relay and the
// server pass it as a value to the Chain's data methods; it also indexes
// per-direction state (Up is 0, Down is 1).
type Direction uint8

// The two directions of a channel.
const (
	// Up is client to upstream: the Reader and ReadEnder hooks.
	Up Direction = iota
	// Down is upstream to client: the Writer and WriteEnder hooks.
	Down
)

// String returns "up" or "down".
func (d Direction) String() string {
	if d == Up {
		return "up"
	}
	return "down"
}

// Directions is a set of directions.
type Directions uint8

// The sets a DataDirector may return.
const (
	// NoData hooks neither direction: the channel may splice both ways.
	NoData Directions = 0
	// UpData hooks client-to-upstream data only.
	UpData Directions = 1 << Up
	// DownData hooks upstream-to-client data only.
	DownData Directions = 1 << Down
	// BothData hooks both directions.
	BothData = UpData | DownData
)

// Has reports whether d is in the set.
func (ds Directions) Has(d Direction) bool { return ds&(1<<d) != 0 }

// String names the set: "none", "up", "down" or "both".
func (ds Directions) String() string {
	switch ds & BothData {
	case UpData:
		return "up"
	case DownData:
		return "down"
	case BothData:
		return "both"
	}
	return "none"
}

// DataDirector is a plugin that declares which directions its data hooks
// see, when that depends on its configuration: a plugin type can then
// implement OnRead, OnWrite and their end hooks on one type, and an
// instance that only rewrites one direction leaves the other to the
// kernel splice path. The Chain asks once, when it is built, never per
// chunk. A direction is hooked only if the plugin also has its hook
// (OnRead for Up, OnWrite for Down); a plugin that is not a DataDirector
// hooks each direction it has the hook for.
type DataDirector interface {
	DataDirections() Directions
}

// DataDirectionsOf reports which directions of a channel p's data hooks
// see, as a Chain built with p calls them: the directions p has a hook
// for (Reader: Up, Writer: Down), narrowed to those it declares if it is
// a DataDirector.
func DataDirectionsOf(p Plugin) Directions {
	var ds Directions
	if _, ok := p.(Reader); ok {
		ds |= UpData
	}
	if _, ok := p.(Writer); ok {
		ds |= DownData
	}
	if dd, ok := p.(DataDirector); ok {
		ds &= dd.DataDirections()
	}
	return ds
}

// MeterDirectionsOf reports which directions p's Meter is told about:
// both, narrowed to those it declares if it is a DataDirector; none if p
// is not a Meter.
func MeterDirectionsOf(p Plugin) Directions {
	if _, ok := p.(Meter); !ok {
		return NoData
	}
	if dd, ok := p.(DataDirector); ok {
		return BothData & dd.DataDirections()
	}
	return BothData
}
