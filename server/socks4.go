package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"

	"ferry/plugins"
)

// SOCKS4 and SOCKS4a constants.
const (
	socks4CmdConnect = 0x01
	socks4Granted    = 0x5A
	socks4Rejected   = 0x5B
	// socks4MaxField bounds USERID and the 4a host name, which the
	// protocol leaves unbounded.
	socks4MaxField = 255
)

var errSOCKS4Field = errors.New("socks4: field too long")

// serveSOCKS4 reads VN CD DSTPORT DSTIP USERID NUL [HOST NUL].
func (h *conn) serveSOCKS4() {
	hdr := h.scratch[:8] // a local array would escape through io.ReadFull
	if _, err := io.ReadFull(h.br, hdr); err != nil {
		h.debugHandshake("socks4", err)
		return
	}
	cmd := hdr[1]
	port := binary.BigEndian.Uint16(hdr[2:4])
	ip := netip.AddrFrom4([4]byte(hdr[4:8]))
	if _, err := readCString(h.br); err != nil { // USERID: not authenticated
		h.debugHandshake("socks4", err)
		h.socks4Reply(socks4Rejected)
		return
	}
	var host string
	// 0.0.0.x with x != 0 means SOCKS4a: the host name follows.
	if b := ip.As4(); b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] != 0 {
		name, err := readCString(h.br)
		if err != nil || !validHostName(name) {
			h.debugHandshake("socks4", err)
			h.socks4Reply(socks4Rejected)
			return
		}
		host = name
	} else {
		host = ip.String()
	}
	if h.l.chain.RequiresAuth() {
		// SOCKS4's USERID carries no password: it cannot authenticate.
		h.socks4Reply(socks4Rejected)
		h.l.log.Debug().Str("client", h.client.String()).Msg("socks4: refused, listener requires authentication")
		return
	}
	if cmd != socks4CmdConnect {
		h.socks4Reply(socks4Rejected)
		h.l.log.Debug().Str("client", h.c.RemoteAddr().String()).Uint8("cmd", cmd).Msg("socks4: command not supported")
		return
	}
	s := h.newSession("socks4", net.JoinHostPort(host, strconv.Itoa(int(port))))
	h.tunnel(s, socks4Replier{h})
}

func readCString(br interface{ ReadSlice(byte) ([]byte, error) }) (string, error) {
	b, err := br.ReadSlice(0)
	if err != nil {
		return "", err
	}
	if len(b) > socks4MaxField+1 {
		return "", errSOCKS4Field
	}
	return string(bytes.TrimSuffix(b, []byte{0})), nil
}

type socks4Replier struct{ h *conn }

func (r socks4Replier) fail(*plugins.Session, plugins.Code, error) {
	r.h.socks4Reply(socks4Rejected)
}

func (r socks4Replier) ok(*plugins.Session, net.Addr) error {
	return r.h.socks4Reply(socks4Granted)
}

// socks4Reply writes VN=0 CD DSTPORT DSTIP; clients ignore the address.
func (h *conn) socks4Reply(cd byte) error {
	return h.write(0x00, cd, 0, 0, 0, 0, 0, 0)
}
