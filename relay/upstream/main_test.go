package upstream

import (
	"testing"

	"go.uber.org/goleak"
)

// Every upstream test must leave no goroutine behind: the fake proxies
// (fakes_test.go) close their connections and wait for their handlers in t.Cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
