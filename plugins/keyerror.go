package plugins

import (
	"errors"
	"fmt"
)

// KeyError is a problem with one key of a plugin's [[plugin]] table. A
// factory returns it (through Errorf) so that ferry reports the problem
// at that key's position in the file:
//
//	if cfg.MaxBytes <= 0 {
//		return nil, plugins.Errorf("max_bytes", "must be positive")
//	}
//	// ferry.toml:31:1: plugin[1].max_bytes: must be positive
//
// An error that is not a KeyError is reported at the table's header.
// Join several with errors.Join to report them all at once.
type KeyError struct {
	// Key is the key path relative to the plugin's table, like
	// "max_bytes", "rule[2].find" or "users.alice". When the file does
	// not set it, the problem is reported at the table's header with
	// the key in front of the message.
	Key string
	Err error
}

// Error returns "key: message", as the problem reads without a position.
func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }

// Unwrap returns the problem without its key.
func (e *KeyError) Unwrap() error { return e.Err }

// Errorf returns a *KeyError for key with a message formatted as
// fmt.Errorf does (%w wraps).
func Errorf(key, format string, args ...any) error {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// KeyErr returns a *KeyError for key with err as its message; nil when err
// is nil.
func KeyErr(key string, err error) error {
	if err == nil {
		return nil
	}
	return &KeyError{Key: key, Err: err}
}

// Within puts the keyed problems of err under the table at prefix: a
// *KeyError for "find" within "rule[2]" becomes one for "rule[2].find".
// An error without a key gets prefix as its key. The parts of a joined
// error (errors.Join) are put under prefix one by one. nil stays nil.
func Within(prefix string, err error) error {
	switch e := err.(type) {
	case nil:
		return nil
	case *KeyError:
		sep := "."
		if len(e.Key) > 0 && e.Key[0] == '[' {
			sep = ""
		}
		return &KeyError{Key: prefix + sep + e.Key, Err: e.Err}
	case interface{ Unwrap() []error }:
		parts := e.Unwrap()
		out := make([]error, len(parts))
		for i, p := range parts {
			out[i] = Within(prefix, p)
		}
		return errors.Join(out...)
	}
	return &KeyError{Key: prefix, Err: err}
}
