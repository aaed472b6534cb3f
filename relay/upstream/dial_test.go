package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"ferry/plugins"
)

func TestDialCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want plugins.Code
	}{
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, plugins.CodeConnRefused},
		{"host unreachable", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, plugins.CodeHostUnreachable},
		{"net unreachable", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, plugins.CodeNetUnreachable},
		{"deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), plugins.CodeTimeout},
		{"dns not found", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, plugins.CodeHostUnreachable},
		{"dns timeout", &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, plugins.CodeTimeout},
		{"reject passes through", plugins.Reject(plugins.CodeForbidden, "no"), plugins.CodeForbidden},
		{"other", errors.New("weird"), plugins.CodeGeneral},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DialCode(tt.err); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
