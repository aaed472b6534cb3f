//go:build !linux

package relay

import "errors"

const benchPeerEnv = "FERRY_RELAY_BENCH_PEER"

// benchPeer is BenchmarkRelayCPU's peer, which runs on Linux only (it reads /proc).
func benchPeer(string) error { return errors.ErrUnsupported }
