//go:build linux

// Package test holds ferry's end-to-end tests: they build the ferry binary
// once, run it as a child process against loopback-only targets and drive
// it with real clients (curl, hand-written SOCKS and CONNECT clients,
// golang.org/x/net/proxy), asserting on what the clients receive, on the
// JSON access log ferry writes to stderr and on exit codes.
//
//	go test -race -count=1 ./test/
//
// When the tests run with -race, the binary is built with -race too, so a
// data race inside ferry makes it exit 66 and fails the test that stopped
// it. Nothing here touches the network beyond 127.0.0.1 and ::1.
//
// The tests run on Linux only, so every file carries a linux build
// constraint: they drive Debian's servers, read /proc and cgroups, set
// Linux socket options and resource limits. Elsewhere the package is
// empty, and `GOOS=darwin go vet ./...` checks the product itself.
package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ferryBin is the path of the binary TestMain built.
var ferryBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ferry-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "make temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	ferryBin = filepath.Join(dir, "ferry")
	args := []string{"build", "-o", ferryBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "..") // the module root holds package main
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build ferry (go %v): %v\n", args, err)
		return 1
	}
	return m.Run()
}

// childEnv is the environment of ferry processes. A race-enabled binary
// sleeps a second before it exits (GORACE atexit_sleep_ms) to catch late
// races; a tenth of that keeps the tests fast.
func childEnv() []string {
	env := os.Environ()
	if raceEnabled {
		env = append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=100"))
	}
	return env
}

// cmdResult is what a short-lived ferry command produced.
type cmdResult struct {
	stdout, stderr string
	code           int
}

// runFerry runs the binary with args in dir (the test's directory if
// empty) and returns its output and exit code. It fails the test if the
// command does not end within a minute or cannot start.
func runFerry(t *testing.T, dir string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBin, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cmdResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		t.Fatalf("ferry %q did not end within a minute; stderr:\n%s", args, res.stderr)
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("run ferry %q: %v", args, err)
	}
	return res
}
