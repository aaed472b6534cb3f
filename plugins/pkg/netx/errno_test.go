package netx

import (
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
)

// Each predicate finds its code through the wrapping net and os add,
// and no other predicate does.
func TestErrnoPredicates(t *testing.T) {
	preds := map[string]func(error) bool{
		"reset": IsReset, "broken pipe": IsBrokenPipe, "refused": IsRefused,
		"host unreachable": IsHostUnreachable, "net unreachable": IsNetUnreachable,
		"timed out": IsTimedOut, "addr in use": IsAddrInUse,
	}
	codes := map[string]error{
		"reset": errReset[0], "broken pipe": errBrokenPipe[0], "refused": errRefused[0],
		"host unreachable": errHostUnreachable[0], "net unreachable": errNetUnreachable[0],
		"timed out": errTimedOut[0], "addr in use": errAddrInUse[0],
	}
	for name, code := range codes {
		err := fmt.Errorf("relay: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", code)})
		for pname, pred := range preds {
			if got, want := pred(err), pname == name; got != want {
				t.Errorf("%s(%s) = %v, want %v", pname, name, got, want)
			}
		}
	}
	for pname, pred := range preds {
		if pred(nil) || pred(errors.New("other")) {
			t.Errorf("%s matched nil or an unrelated error", pname)
		}
	}
}
