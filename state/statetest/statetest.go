// Package statetest makes state Stores for the tests of plugins that use
// them: several Stores on one Redis, as several ferrys of a fleet. It is
// for tests only and holds no state.
//
//	sts, r := statetest.Fleet(t, 2, state.FailOpen) // r.Stop(), r.Start()
package statetest

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/state"
	"ferry/test/testkit"
)

// Fleet starts a redis-server (see testkit.StartRedis) and opens n
// Stores on it, each with a client of its own, shared, with onErr and a
// short timeout; they close at cleanup.
func Fleet(t testing.TB, n int, onErr state.OnError) ([]*state.Store, *testkit.Redis) {
	t.Helper()
	r := testkit.StartRedis(t)
	out := make([]*state.Store, n)
	for i := range out {
		b, err := state.OpenRedis(r.URL())
		if err != nil {
			t.Fatal(err)
		}
		st := state.New(state.Config{Backend: b, Shared: true, OnError: onErr, Timeout: 500 * time.Millisecond, Log: zerolog.Nop()})
		t.Cleanup(func() { _ = st.Close(context.Background()) })
		out[i] = st
	}
	return out, r
}
