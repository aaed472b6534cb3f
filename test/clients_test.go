//go:build linux

package test

import (
	"context"

	"ferry/test/testkit"
)

// tunnelDialer opens a byte tunnel through ferry to target.
type tunnelDialer func(ctx context.Context, proxyAddr, target string) (*testkit.BufConn, error)
