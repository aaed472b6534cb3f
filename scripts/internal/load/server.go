package load

import (
	"net"
	"sync"
	"time"
)

// Server accepts on a listener and runs serve for each connection with a
// deadline set, tracking the connections so that CloseConns and Close
// can end them. The tools' targets are Servers.
type Server struct {
	ln    net.Listener
	serve func(net.Conn)
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Listen starts a Server on addr. No connection lives past deadline;
// serve need not close its connection.
func Listen(addr string, deadline time.Time, serve func(net.Conn)) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, serve: serve, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept(deadline)
	return s, nil
}

// Addr is the address the Server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) accept(deadline time.Time) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		c.SetDeadline(deadline)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serve(c)
		}()
	}
}

// CloseConns closes every open connection; the Server goes on accepting.
func (s *Server) CloseConns() {
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

// Close stops accepting, closes every open connection and waits for
// their serve calls to return.
func (s *Server) Close() {
	s.ln.Close()
	s.CloseConns()
	s.wg.Wait()
}
