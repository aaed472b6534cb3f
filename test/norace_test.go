//go:build !race

package test

// raceEnabled: the tests run without -race, so the binary is too.
const raceEnabled = false
