package relay

import (
	"testing"

	"go.uber.org/goleak"
)

// Every relay test must leave no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
