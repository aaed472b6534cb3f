//go:build linux && !race

package test

// raceEnabled: the tests run without -race, so the binary is too.
const raceEnabled = false
