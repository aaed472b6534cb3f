package main

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"ferry/config"
	"ferry/plugins/pkg/netx"
)

// checkBinds tries to bind each listener address of cfg and its admin
// address, as `ferry run` will, and reports each one that fails as
// "FILE:LINE:COL: key: error". A port that is busy because a running
// ferry listens on it is fine: that ferry keeps its sockets across a
// reload, and a new one is started only after it stops. A busy port
// whose holder ferry cannot see (another user's process, or /proc
// restricted) is a warning, returned in warnings: it may be the running
// ferry, as when systemd's ExecReload runs ferry check. Port 0 is
// skipped.
func checkBinds(cfg *config.Config) (warnings []string, err error) {
	type addr struct{ key, listen string }
	var addrs []addr
	for i, l := range cfg.Listeners {
		addrs = append(addrs, addr{fmt.Sprintf("listener[%d].listen", i), l.Listen})
	}
	if cfg.Admin.Listen != "" {
		addrs = append(addrs, addr{"admin.listen", cfg.Admin.Listen})
	}
	var lines []string
	for _, a := range addrs {
		if strings.HasSuffix(a.listen, ":0") {
			continue
		}
		ln, err := net.Listen("tcp", a.listen)
		if err == nil {
			ln.Close()
			continue
		}
		if netx.IsAddrInUse(err) {
			switch pid, ferry := portHolder(a.listen); {
			case ferry:
				continue // the running ferry's own listener
			case pid == 0:
				warnings = append(warnings, fmt.Sprintf("%s: %v, by a process ferry cannot see: fine only if it is the running ferry", cfg.Where(a.key), err))
				continue
			}
		}
		lines = append(lines, fmt.Sprintf("%s: %v", cfg.Where(a.key), err))
	}
	if len(lines) == 0 {
		return warnings, nil
	}
	return warnings, errors.New(strings.Join(lines, "\n"))
}
