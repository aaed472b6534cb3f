package relay

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Every relay test must leave no goroutine behind. Run with benchPeerEnv
// set, the binary is BenchmarkRelayCPU's peer process instead.
func TestMain(m *testing.M) {
	if spec := os.Getenv(benchPeerEnv); spec != "" {
		if err := benchPeer(spec); err != nil {
			fmt.Fprintln(os.Stderr, "bench peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
