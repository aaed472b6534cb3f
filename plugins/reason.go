package plugins

import (
	"errors"
	"fmt"
)

// Code is what a rejected or failed connection tells its client. Each
// handshake maps it to its protocol: HTTP status, SOCKS5 or SOCKS4 reply.
type Code uint8

const (
	// CodeGeneral: HTTP 502, SOCKS5 0x01 general failure.
	CodeGeneral Code = iota
	// CodeForbidden: HTTP 403, SOCKS5 0x02 not allowed by ruleset.
	CodeForbidden
	// CodeAuthRequired: HTTP 407, SOCKS5 0x02 (SOCKS5 authenticates before
	// the request; a request-time refusal is "not allowed").
	CodeAuthRequired
	// CodeNetUnreachable: HTTP 502, SOCKS5 0x03.
	CodeNetUnreachable
	// CodeHostUnreachable: HTTP 502, SOCKS5 0x04 (also name resolution
	// failures).
	CodeHostUnreachable
	// CodeConnRefused: HTTP 502, SOCKS5 0x05.
	CodeConnRefused
	// CodeTimeout: HTTP 504, SOCKS5 0x06 TTL expired.
	CodeTimeout
)

var codeNames = [...]string{"general failure", "forbidden", "auth required",
	"network unreachable", "host unreachable", "connection refused", "timeout"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// HTTPStatus is the status an HTTP proxy client receives for c.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeForbidden:
		return 403
	case CodeAuthRequired:
		return 407
	case CodeTimeout:
		return 504
	default:
		return 502
	}
}

// SOCKS5Reply is the RFC 1928 REP field for c.
func (c Code) SOCKS5Reply() byte {
	switch c {
	case CodeForbidden, CodeAuthRequired:
		return 0x02
	case CodeNetUnreachable:
		return 0x03
	case CodeHostUnreachable:
		return 0x04
	case CodeConnRefused:
		return 0x05
	case CodeTimeout:
		return 0x06
	default:
		return 0x01
	}
}

// RejectError is a refusal that tells the client why.
type RejectError struct {
	Code Code
	// Msg is for logs (and the body of an HTTP error); it should not leak
	// secrets.
	Msg string
	// Err is the cause, if any.
	Err error
	// Answer, when set, is what an HTTP client gets instead of ferry's
	// error text (see Block); SOCKS clients get Code's reply as ever.
	Answer *HTTPAnswer
}

func (e *RejectError) Error() string {
	switch {
	case e.Msg != "" && e.Err != nil:
		return e.Msg + ": " + e.Err.Error()
	case e.Msg != "":
		return e.Msg
	case e.Err != nil:
		return e.Code.String() + ": " + e.Err.Error()
	}
	return e.Code.String()
}

func (e *RejectError) Unwrap() error { return e.Err }

// Reject returns an error for Connector hooks that refuses the connection
// with code, and msg for the log.
func Reject(code Code, msg string) error {
	return &RejectError{Code: code, Msg: msg}
}

// CodeOf extracts the client-facing code from err; CodeGeneral when err
// carries none.
func CodeOf(err error) Code {
	if re, ok := asReject(err); ok {
		return re.Code
	}
	return CodeGeneral
}

func asReject(err error) (*RejectError, bool) {
	var re *RejectError
	ok := errors.As(err, &re)
	return re, ok
}

// ErrClose, returned by a data hook, ends the channel as an orderly close
// initiated by the plugin (reason "plugin closed"), not an error.
var ErrClose = errors.New("closed by plugin")

// CloseReason says why a channel ended.
type CloseReason uint8

const (
	ReasonUnknown CloseReason = iota
	ReasonClientClosed
	ReasonUpstreamClosed
	ReasonIdleTimeout
	ReasonDialFailed
	ReasonRejected
	ReasonPluginClosed
	ReasonPluginError
	ReasonShutdown
	ReasonError
	// ReasonCompleted: a plain HTTP request whose response was delivered.
	ReasonCompleted
	// ReasonAdminClosed: an operator ended the channel through the admin
	// service.
	ReasonAdminClosed
	// ReasonUpstreamReset: the upstream reset the connection (ECONNRESET);
	// ferry reset the client's side too, so a cut stream does not look
	// complete.
	ReasonUpstreamReset
	// ReasonClientReset: the client reset the connection; ferry reset the
	// upstream's side too.
	ReasonClientReset
)

var reasonNames = [...]string{"unknown", "client closed", "upstream closed",
	"idle timeout", "dial failed", "rejected", "plugin closed", "plugin error",
	"shutdown", "error", "completed", "closed by admin",
	"upstream reset", "client reset"}

func (r CloseReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}
