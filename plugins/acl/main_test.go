package acl

import (
	"testing"

	"go.uber.org/goleak"
)

// No test may leave a goroutine behind: timers, writers and per-channel
// state end with the channel or the plugin's Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
