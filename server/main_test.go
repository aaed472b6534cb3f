package server

import (
	"testing"

	"go.uber.org/goleak"
)

// Every server test must leave no goroutine behind: connections, channels,
// timers and accept loops all end with Shutdown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
