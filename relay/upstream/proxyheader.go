package upstream

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"ferry/proxyproto"
)

// SendProxyHeader returns a dialer that writes a PROXY protocol header
// (version 1 or 2) on every connection forward makes, before anything
// else: placed between an upstream proxy's dialer and the dialer that
// reaches the proxy, the header goes to the proxy ahead of its handshake.
// The header is the context DialInfo's ProxyHeader, with only the TLV
// types in pass; a dial without one sends nothing.
func SendProxyHeader(forward Dialer, version int, pass []byte) Dialer {
	return &proxyHeaderDialer{forward: forward, version: version, pass: pass}
}

type proxyHeaderDialer struct {
	forward Dialer
	version int
	pass    []byte
}

func (d *proxyHeaderDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.forward.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	info := dialInfoFrom(ctx)
	if info == nil || info.ProxyHeader == nil {
		return c, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetWriteDeadline(dl)
	}
	err = WriteProxyHeader(c, info.ProxyHeader, d.version, d.pass)
	c.SetWriteDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", address, err)
	}
	return c, nil
}

// WriteProxyHeader writes base as a PROXY header of version (1 or 2) with
// only the TLVs whose types are in pass.
func WriteProxyHeader(w io.Writer, base *proxyproto.Header, version int, pass []byte) error {
	hdr := *base
	hdr.Version = version
	hdr.TLVs = nil
	for _, t := range base.TLVs {
		if version == 2 && slices.Contains(pass, t.Type) { // v1 carries no TLVs
			hdr.TLVs = append(hdr.TLVs, t)
		}
	}
	if _, err := hdr.WriteTo(w); err != nil {
		return fmt.Errorf("send PROXY header: %w", err)
	}
	return nil
}
