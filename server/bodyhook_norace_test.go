//go:build !race

package server

// raceEnabled: see bodyhook_race_test.go.
const raceEnabled = false
