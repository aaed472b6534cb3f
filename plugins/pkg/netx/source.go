package netx

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// HostAddrs checks source addresses (the local address a dial binds)
// against this host's interface addresses, which it lists once, the
// first time it needs them: a configuration load makes one and checks
// all its addresses with it. Not safe for concurrent use.
type HostAddrs struct {
	addrs []netip.Addr
	err   error
	done  bool
}

func (h *HostAddrs) get() ([]netip.Addr, error) {
	if !h.done {
		h.done = true
		h.addrs, h.err = interfaceAddrs()
	}
	return h.addrs, h.err
}

// ParseSource parses s as a source address (IPv4-mapped addresses as
// IPv4) and checks that a dial can bind it.
func (h *HostAddrs) ParseSource(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf(`invalid address %q: want an IP address, like "192.0.2.10" or "2001:db8::10"`, s)
	}
	a = a.Unmap()
	local, lerr := h.get()
	if err := CheckSource(a, local, lerr); err != nil {
		return netip.Addr{}, err
	}
	return a, nil
}

// interfaceAddrs is net.InterfaceAddrs as netip addresses.
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list this host's addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		// An *net.IPNet prints as "192.0.2.10/24".
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}

// CheckSource reports why a dial could not leave from a, given the
// host's addresses (or the error listing them). Linux answers the whole
// loopback range, so 127.0.0.0/8 and ::1 need not be listed.
func CheckSource(a netip.Addr, local []netip.Addr, listErr error) error {
	switch {
	case a.Zone() != "":
		return fmt.Errorf("%s: zones are not allowed", a)
	case a.IsUnspecified():
		return fmt.Errorf("%s is unspecified: name one address of this host", a)
	case a.IsMulticast():
		return fmt.Errorf("%s is a multicast address: name one address of this host", a)
	case a.IsLoopback():
		return nil
	case listErr != nil:
		return listErr
	case !slices.Contains(local, a):
		return fmt.Errorf("%s is not assigned to this host (only its interfaces' addresses, 127.0.0.0/8 and ::1 can be bound)", a)
	}
	return nil
}
