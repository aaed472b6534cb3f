package relay

import (
	"fmt"
	"net"
	"time"

	"ferry/plugins"
)

// SendUpstream implements plugins.Link.
func (c *Channel) SendUpstream(p []byte) error {
	return c.inject(plugins.Up, c.Upstream, p)
}

// SendClient implements plugins.Link.
func (c *Channel) SendClient(p []byte) error {
	return c.inject(plugins.Down, c.Client, p)
}

// inject writes p to dst, the destination of direction d, between the
// copy loop's chunks.
func (c *Channel) inject(d plugins.Direction, dst net.Conn, p []byte) error {
	mu := &c.writeMu[d]
	mu.Lock()
	n, err := dst.Write(p)
	mu.Unlock()
	c.delivered[d].Add(int64(n))
	c.lastNano.Store(int64(time.Since(c.start)))
	if err != nil {
		return fmt.Errorf("inject: %w", err)
	}
	return nil
}

var _ plugins.Link = (*Channel)(nil)
