package server

import (
	"context"
	"net"
	"reflect"
	"testing"
	"time"

	"ferry/plugins"
)

// fakeRelay is a live relay that records how it was ended.
type fakeRelay struct{ shut, closed chan struct{} }

func newFakeRelay() *fakeRelay {
	return &fakeRelay{shut: make(chan struct{}, 1), closed: make(chan struct{}, 1)}
}

func (f *fakeRelay) Bytes() (int64, int64) { return 0, 0 }
func (f *fakeRelay) Close()                { f.closed <- struct{}{} }
func (f *fakeRelay) Shutdown()             { f.shut <- struct{}{} }

// TestShutdownChannels: when hardCtx ends, the server ends every tracked
// channel that it must shut down itself, those tracked before and those
// tracked after, once each.
func TestShutdownChannels(t *testing.T) {
	for _, tt := range []struct {
		name  string
		after bool // track after hardCtx has ended
	}{
		{name: "tracked before the end"},
		{name: "tracked after the end", after: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := &Server{hardCtx: ctx}
			first := newFakeRelay()
			s.track(&plugins.Session{ID: "a"}, first) // registers the shutdown
			f := newFakeRelay()
			if !tt.after {
				s.track(&plugins.Session{ID: "b"}, f)
			}
			cancel()
			select {
			case <-first.shut:
			case <-time.After(5 * time.Second):
				t.Fatal("a channel tracked before the end was not shut down")
			}
			if tt.after {
				s.track(&plugins.Session{ID: "b"}, f)
			}
			select {
			case <-f.shut:
			case <-time.After(5 * time.Second):
				t.Fatal("channel not shut down")
			}
			select {
			case <-f.shut:
				t.Error("channel shut down twice")
			case <-f.closed:
				t.Error("channel closed as by the admin API")
			default:
			}
		})
	}
}

// TestChannelsInfo: /channels reads what it reports from the session
// when asked, but for the upstream and chain, kept as they were when the
// channel started (a UDP association's change with its destinations).
func TestChannelsInfo(t *testing.T) {
	s := &Server{hardCtx: context.Background()}
	client := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 4000}
	up := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3), Port: 443}
	sess := &plugins.Session{ID: "a", Listener: "l", Protocol: "socks5", User: "u", Groups: []string{"g"},
		Target: "example.test:443", Upstream: "corp", UpstreamPath: "corp", Client: client, UpstreamAddr: up,
		Intercepted: "example.test", Parent: "p"}
	s.track(sess, newFakeRelay())
	sess.Upstream, sess.UpstreamPath = "other", "other"
	got := s.Channels()
	if len(got) != 1 {
		t.Fatalf("got %d channels, want 1", len(got))
	}
	want := ChannelInfo{ID: "a", Listener: "l", Protocol: "socks5", Client: "127.0.0.2:4000", User: "u",
		Groups: []string{"g"}, Target: "example.test:443", Upstream: "corp", UpstreamAddr: "127.0.0.3:443",
		Chain: "corp", Intercepted: "example.test", Parent: "p", Started: got[0].Started}
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("got %+v, want %+v", got[0], want)
	}
}
