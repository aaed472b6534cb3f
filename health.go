package main

// `ferry health` checks that a ferry listener answers, for container
// health checks (the image has no shell, so no curl or nc either):
//
//	ferry health                          # 127.0.0.1:8080, within 2s
//	ferry health --addr [::1]:3128 --timeout 5s
//
// It opens a connection and performs the first step of a real handshake:
// a SOCKS5 greeting offering "no authentication" (05 01 00), to which any
// SOCKS5 method reply (05 00, or 05 FF from a listener that requires a
// password) proves ferry is serving. A listener that does not speak
// SOCKS5 closes the connection without a word; then an HTTP request
// (OPTIONS *) on a new connection must get an HTTP status line (ferry
// answers 400: it only serves proxy requests). Neither probe names a
// target, so no plugin runs, nothing is dialed and nothing is written to
// the access log.
//
// A listener at max_connections closes new connections at once, so the
// check fails while ferry is full: right for readiness (send new clients
// elsewhere), wrong for liveness (restarting a busy proxy cuts every
// connection it serves). With --live, a listener that accepts the
// connection and closes it unanswered passes too: the process is not
// hung. Only a refused connection or no answer within the timeout fail.
//
// It does not check tcp listeners (any connection to one dials its
// target) nor, without --live, listeners with proxy_protocol =
// "required", which close connections that do not start with a PROXY
// header.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"ferry/plugins/pkg/netx"
)

// defaultHealthAddr is the listener of the container image's
// configuration, as seen from inside the container.
const defaultHealthAddr = "127.0.0.1:8080"

// healthCommand is `ferry health`. It prints one line saying what
// answered and exits 0, or prints why the check failed and exits 1.
func healthCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "health",
		Usage:     "check that a listener answers (for container health checks)",
		ArgsUsage: " ",
		Description: "Connects to a ferry listener and sends a SOCKS5 greeting; any SOCKS5 method\n" +
			"reply proves ferry is serving. A listener without socks5 gets an HTTP request\n" +
			"instead and must answer with a status line. Exits 0 when ferry answers, else\n" +
			"prints the reason and exits 1. Neither probe reaches the plugins or the access\n" +
			"log. Not for tcp listeners or listeners with proxy_protocol = \"required\".\n\n" +
			"A listener at max_connections closes new connections unanswered, which fails\n" +
			"the check (readiness: send clients elsewhere). With --live that passes too, for\n" +
			"liveness probes: a full ferry must not be restarted, only a hung one.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Aliases: []string{"a"}, Value: defaultHealthAddr, Usage: "listener `ADDR` (host:port) to check"},
			&cli.DurationFlag{Name: "timeout", Aliases: []string{"t"}, Value: 2 * time.Second, Usage: "fail if ferry has not answered within `DURATION`"},
			&cli.BoolFlag{Name: "live", Usage: "also pass when the listener accepts and closes connections unanswered (at max_connections): for liveness probes"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("health: unexpected argument %q (use --addr)", c.Args().First()), 1)
			}
			addr, timeout := c.String("addr"), c.Duration("timeout")
			if timeout <= 0 {
				return cli.Exit(fmt.Sprintf("health: --timeout %v: want a positive duration", timeout), 1)
			}
			ctx, cancel := context.WithTimeout(c.Context, timeout)
			defer cancel()
			answer, err := checkHealth(ctx, addr)
			if errors.Is(err, errNoAnswer) && c.Bool("live") {
				fmt.Fprintf(stdout, "ok: %s accepts connections but closes them unanswered (max_connections reached?)\n", addr)
				return nil
			}
			if err != nil {
				return cli.Exit(fmt.Sprintf("unhealthy: %s: %v", addr, err), 1)
			}
			fmt.Fprintf(stdout, "ok: %s answers %s\n", addr, answer)
			return nil
		},
	}
}

// errNoAnswer means the listener accepted the connection and closed it
// without answering the probe: it does not speak that protocol, or it
// is at max_connections.
var errNoAnswer = errors.New("closed the connection without answering")

// checkHealth probes addr with a SOCKS5 greeting and, if the listener
// closes without answering, with an HTTP request. It returns what
// answered ("socks5 (method 0x00)", "http (HTTP/1.1 400 Bad Request)"),
// or why ferry did not answer before ctx ended: an error wrapping
// errNoAnswer when it closed both connections unanswered.
func checkHealth(ctx context.Context, addr string) (string, error) {
	answer, err := probeSOCKS5(ctx, addr)
	if err == nil {
		return answer, nil
	}
	if !errors.Is(err, errNoAnswer) {
		return "", err
	}
	answer, httpErr := probeHTTP(ctx, addr)
	if httpErr == nil {
		return answer, nil
	}
	if errors.Is(httpErr, errNoAnswer) {
		return "", fmt.Errorf("%w; %v: does the listener speak socks5 or http, without proxy_protocol = \"required\", below max_connections?", err, httpErr)
	}
	return "", fmt.Errorf("%v; %w", err, httpErr)
}

// probeSOCKS5 sends a greeting offering "no authentication" and reads the
// two-byte method reply.
func probeSOCKS5(ctx context.Context, addr string) (string, error) {
	var reply [2]byte
	err := exchange(ctx, addr, []byte{0x05, 0x01, 0x00}, func(r *bufio.Reader) error {
		_, err := io.ReadFull(r, reply[:])
		return err
	})
	if err != nil {
		return "", fmt.Errorf("socks5 greeting: %w", err)
	}
	if reply[0] != 0x05 {
		return "", fmt.Errorf("socks5 greeting: reply % x is not SOCKS5", reply[:])
	}
	return fmt.Sprintf("socks5 (method 0x%02x)", reply[1]), nil
}

// probeHTTP sends OPTIONS * and reads the status line. Any status will
// do: ferry answers 400 to a request that is not for a proxy.
func probeHTTP(ctx context.Context, addr string) (string, error) {
	var status string
	req := "OPTIONS * HTTP/1.1\r\nHost: ferry-health\r\nUser-Agent: ferry-health\r\nConnection: close\r\n\r\n"
	err := exchange(ctx, addr, []byte(req), func(r *bufio.Reader) error {
		line, err := r.ReadString('\n')
		if err != nil && line == "" {
			return err
		}
		status = strings.TrimRight(line, "\r\n")
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("http request: %w", err)
	}
	// "HTTP/1.1 400 Bad Request": a version, a space, three digits.
	if !strings.HasPrefix(status, "HTTP/1.") || len(status) < 12 || status[8] != ' ' ||
		!isDigits(status[9:12]) {
		return "", fmt.Errorf("http request: answer %q is not an HTTP status line", truncate(status, 40))
	}
	return "http (" + status + ")", nil
}

// exchange connects to addr, writes req and lets read parse the answer,
// all before ctx's deadline. A connection closed or reset before the
// first byte of the answer is errNoAnswer.
func exchange(ctx context.Context, addr string, req []byte, read func(*bufio.Reader) error) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// Closing the connection when ctx ends covers a cancelled ctx too.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write(req); err != nil {
		if isClosed(err) {
			return errNoAnswer
		}
		return fmt.Errorf("write: %w", err)
	}
	r := bufio.NewReader(c)
	if _, err := r.Peek(1); err != nil {
		if isClosed(err) {
			return errNoAnswer
		}
		return fmt.Errorf("read: %w", timeoutError(ctx, err))
	}
	if err := read(r); err != nil {
		return fmt.Errorf("read: %w", timeoutError(ctx, err))
	}
	return nil
}

// isClosed reports a peer that closed (FIN) or reset the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || netx.IsReset(err) || netx.IsBrokenPipe(err)
}

// timeoutError says "no answer within the timeout" for a deadline error.
func timeoutError(ctx context.Context, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || ctx.Err() != nil {
		return fmt.Errorf("no answer before the timeout: %w", err)
	}
	return err
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
