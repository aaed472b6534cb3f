package config

import (
	"strings"
	"time"
)

// upstreams checks the [[upstream]] tables and returns their names.
func (l *loader) upstreams(us []Upstream) map[string]int {
	names := map[string]int{}
	for i, u := range us {
		p := indexKey("upstream", i)
		if u.Name == "" {
			l.errorf(p+".name", "missing: every [[upstream]] needs a name, which routes and via use")
		} else if j, dup := names[u.Name]; dup {
			l.errorf(p+".name", "duplicate name %q (also upstream[%d])", u.Name, j)
		} else {
			names[u.Name] = i
		}
	}
	for i, u := range us {
		p := indexKey("upstream", i)
		group := len(u.Members) > 0
		switch {
		case u.URL != "" && group:
			l.errorf(p+".members", "set url (one proxy) or members (a group), not both")
		case u.URL == "" && !group:
			l.errorf(p+".url", `missing: set url (like "socks5://10.0.0.1:1080") or members (a group)`)
		case u.URL != "":
			if err := checkUpstreamURL(u.URL); err != nil {
				l.errorf(p+".url", "%v", err)
			}
		}
		if u.Via != "" {
			if _, ok := names[u.Via]; !ok {
				l.errorf(p+".via", "no [[upstream]] named %q", u.Via)
			} else if group {
				l.errorf(p+".via", "a group has no via of its own: set via on its members")
			}
		}
		if u.Name == Direct && u.URL != Direct {
			l.errorf(p+".name", `"direct" is reserved for the direct dial: choose another name`)
		}
		l.tlsSettings(p, &us[i])
		if hc := u.HealthCheck; hc != nil {
			l.healthCheck(p+".health_check", hc, group)
		}
		l.oneOf(p+".send_proxy_protocol", u.SendProxyProtocol, "off", "v1", "v2")
		l.passTLVs(p, u.PassTLVs, u.SendProxyProtocol)
		if group {
			l.oneOf(p+".strategy", u.Strategy, "failover", "round-robin", "random", "least-connections")
		} else if u.Strategy != "" {
			l.errorf(p+".strategy", "only a group (members) has a strategy")
		}
		seen := map[string]bool{}
		for j, m := range u.Members {
			pj := indexKey(p+".members", j)
			switch _, ok := names[m]; {
			case !ok:
				l.errorf(pj, "no [[upstream]] named %q", m)
			case seen[m]:
				l.errorf(pj, "%q is listed twice", m)
			}
			seen[m] = true
		}
	}
	l.loops(us, names)
	return names
}

// loops reports chains of via and members that come back to where they
// started: "via loop: a -> b -> a".
func (l *loader) loops(us []Upstream, names map[string]int) {
	type edge struct {
		to  int
		key string // the key that makes the edge
		via bool
	}
	edges := make([][]edge, len(us))
	for i, u := range us {
		if j, ok := names[u.Via]; ok && len(u.Members) == 0 && names[u.Name] == i {
			edges[i] = append(edges[i], edge{j, indexKey("upstream", i) + ".via", true})
		}
		for k, m := range u.Members {
			if j, ok := names[m]; ok && names[u.Name] == i {
				edges[i] = append(edges[i], edge{j, indexKey(indexKey("upstream", i)+".members", k), false})
			}
		}
	}
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(us))
	var stack []int      // upstreams on the current path
	var stackEdge []edge // stackEdge[k] leads from stack[k] to stack[k+1]
	var visit func(i int)
	visit = func(i int) {
		color[i] = grey
		stack = append(stack, i)
		for _, e := range edges[i] {
			switch color[e.to] {
			case white:
				stackEdge = append(stackEdge, e)
				visit(e.to)
				stackEdge = stackEdge[:len(stackEdge)-1]
			case grey:
				start := 0
				for stack[start] != e.to {
					start++
				}
				allVia, allMembers := e.via, !e.via
				chain := []string{}
				for k := start; k < len(stack); k++ {
					chain = append(chain, us[stack[k]].Name)
					if k < len(stack)-1 {
						allVia = allVia && stackEdge[k].via
						allMembers = allMembers && !stackEdge[k].via
					}
				}
				chain = append(chain, us[e.to].Name)
				kind := "upstream loop"
				switch {
				case allVia:
					kind = "via loop"
				case allMembers:
					kind = "members loop"
				}
				l.errorf(e.key, "%s: %s", kind, strings.Join(chain, " -> "))
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
	}
	for i := range us {
		if color[i] == white {
			visit(i)
		}
	}
}

// tlsSettings checks the https-only keys and loads ca_file.
func (l *loader) tlsSettings(p string, u *Upstream) {
	https := strings.HasPrefix(u.URL, "https://")
	if u.InsecureSkipVerify && !https {
		l.errorf(p+".insecure_skip_verify", "only an https upstream has TLS settings")
	}
	if u.CAFile == "" {
		return
	}
	if !https {
		l.errorf(p+".ca_file", "only an https upstream has TLS settings")
		return
	}
	pool, err := ReadCertPool(l.filePath(u.CAFile))
	if err != nil {
		l.errorf(p+".ca_file", "%v", err)
		return
	}
	u.RootCAs = pool
}

// healthCheck checks a health_check table and fills in its timeout.
func (l *loader) healthCheck(p string, hc *HealthCheck, group bool) {
	if group {
		l.errorf(p, "a group is as healthy as its members: set health_check on them")
		return
	}
	if !l.x.has(p + ".interval") {
		l.errorf(p+".interval", `missing: set how often to probe, like "10s"`)
	} else {
		l.positive(p+".interval", hc.Interval)
	}
	switch {
	case hc.Target == "":
		l.errorf(p+".target", `missing: set the host:port to dial through the upstream, like "example.com:443"`)
	default:
		if err := checkHostPort(hc.Target, false, 1); err != nil {
			l.errorf(p+".target", "%v", err)
		}
	}
	if !l.x.has(p + ".timeout") {
		hc.Timeout = Duration(min(hc.Interval.D(), 5*time.Second))
	} else {
		l.positive(p+".timeout", hc.Timeout)
	}
}
