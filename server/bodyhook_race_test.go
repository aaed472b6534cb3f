//go:build race

package server

// raceEnabled: the race detector's bookkeeping allocates too, so the
// tests that bound allocation only report it.
const raceEnabled = true
