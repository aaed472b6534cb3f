package netx

import (
	"net"
	"testing"
)

func TestPrefixConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	pc := &PrefixConn{Conn: a, Prefix: []byte("abcdef")}
	buf := make([]byte, 4)
	n, err := pc.Read(buf)
	if err != nil || string(buf[:n]) != "abcd" {
		t.Fatalf("first read %q %v", buf[:n], err)
	}
	n, err = pc.Read(buf)
	if err != nil || string(buf[:n]) != "ef" {
		t.Fatalf("second read %q %v", buf[:n], err)
	}
	go b.Write([]byte("gh"))
	n, err = pc.Read(buf)
	if err != nil || string(buf[:n]) != "gh" {
		t.Fatalf("third read %q %v", buf[:n], err)
	}
	if err := pc.CloseWrite(); err != nil { // net.Pipe cannot half-close: a no-op
		t.Fatal(err)
	}
}
