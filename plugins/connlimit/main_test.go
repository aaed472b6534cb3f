package connlimit

import (
	"testing"

	"go.uber.org/goleak"
)

// No test may leave a goroutine behind: timers, writers and per-channel
// state end with the channel or the plugin's Close. go-redis's redialer,
// started by a failed dial, sleeps a second before it sees its closed
// pool and ends: not a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
