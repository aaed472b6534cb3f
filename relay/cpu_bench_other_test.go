//go:build !unix

package relay

import "errors"

const benchPeerEnv = "FERRY_RELAY_BENCH_PEER"

// benchPeer is BenchmarkRelayCPU's peer, which runs on Unix only.
func benchPeer(string) error { return errors.ErrUnsupported }
