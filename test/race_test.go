//go:build linux && race

package test

// raceEnabled: the tests run with -race, so the binary is built with it.
const raceEnabled = true
