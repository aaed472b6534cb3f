package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

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

func TestUpstreamErrorText(t *testing.T) {
	cause := errors.New("cause")
	tests := []struct {
		stage Stage
		want  string
	}{
		{StageConnect, "upstream up1: connect: cause"},
		{StageHandshake, "upstream up1: handshake: cause"},
		{StageAuth, "upstream up1: auth failed: cause"},
		{StageTarget, "upstream up1: cause"},
		{StageDown, "upstream up1: down: cause"},
	}
	for _, tt := range tests {
		t.Run(string(tt.stage), func(t *testing.T) {
			err := &Error{Upstream: "up1", Stage: tt.stage, Code: plugins.CodeTimeout, Err: cause}
			if err.Error() != tt.want {
				t.Fatalf("Error() = %q, want %q", err.Error(), tt.want)
			}
			if !errors.Is(err, cause) {
				t.Fatal("Unwrap does not reach the cause")
			}
			if DialCode(fmt.Errorf("wrapped: %w", err)) != plugins.CodeTimeout {
				t.Fatal("DialCode does not take the Error's code")
			}
			if got, want := memberFailed(err), tt.stage != StageTarget; got != want {
				t.Fatalf("memberFailed = %v, want %v", got, want)
			}
		})
	}
	if memberFailed(errors.New("plain")) {
		t.Fatal("memberFailed(plain error) = true")
	}
}

func TestForwardError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name      string
		err       error
		upstream  string
		stage     Stage
		code      plugins.Code
		sameError bool
	}{
		{"plain dial error", refused, "second", StageConnect, plugins.CodeConnRefused, false},
		{"earlier hop down stays to blame",
			&Error{Upstream: "first", Stage: StageConnect, Code: plugins.CodeConnRefused, Err: refused},
			"first", StageConnect, plugins.CodeConnRefused, true},
		{"earlier hop auth stays to blame",
			&Error{Upstream: "first", Stage: StageAuth, Code: plugins.CodeGeneral, Err: errors.New("bad")},
			"first", StageAuth, plugins.CodeGeneral, true},
		{"earlier hop cannot reach this one",
			&Error{Upstream: "first", Stage: StageTarget, Code: plugins.CodeHostUnreachable, Err: errors.New("unreachable")},
			"second", StageConnect, plugins.CodeHostUnreachable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := forwardError("second", tt.err)
			upstreamErr(t, err, tt.upstream, tt.stage, tt.code)
			if tt.sameError && err != tt.err {
				t.Fatalf("forwardError rewrapped %v", tt.err)
			}
			if !errors.Is(err, tt.err) {
				t.Fatal("the cause is lost")
			}
		})
	}
}

func TestHandshakeErrorContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := handshakeError("up", ctx, errors.New("read: use of closed connection"))
	ue := upstreamErr(t, err, "up", StageHandshake, plugins.CodeGeneral)
	if !errors.Is(ue, context.Canceled) || !strings.Contains(err.Error(), "use of closed connection") {
		t.Fatalf("cancellation not reported: %v", err)
	}

	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err = handshakeError("up", ctx, errors.New("read: i/o timeout"))
	upstreamErr(t, err, "up", StageHandshake, plugins.CodeTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline not reported: %v", err)
	}
	// Already the context's error: not repeated.
	err = handshakeError("up", ctx, fmt.Errorf("x: %w", context.DeadlineExceeded))
	if strings.Count(err.Error(), "deadline exceeded") != 1 {
		t.Fatalf("deadline repeated: %v", err)
	}
}
