// Command ferry is a forward proxy server: HTTP CONNECT, plain HTTP
// proxying, SOCKS5 and SOCKS4/4a on one port, plain TCP forwarding, and a
// chain of compiled-in plugins per listener.
//
//	ferry run                 # embedded default: 127.0.0.1:8080, all protocols
//	ferry run -c ferry.toml   # from a file
//	ferry check -c ferry.toml # validate a file
//	ferry plugins             # list compiled-in plugins
//
// This file is the CLI only: its commands and flags, loading the config
// and the logger. run.go is `ferry run`'s life from start to drained
// exit; reload.go runs its reloads one at a time.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"ferry/config"
	"ferry/plugins"
	_ "ferry/plugins/all"
	"ferry/server"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	if err := newApp(os.Stdout, os.Stderr).Run(os.Args); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := ec.Error(); msg != "" {
				fmt.Fprintln(os.Stderr, msg)
			}
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "ferry:", err)
		os.Exit(1)
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	configFlag := &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "TOML configuration `FILE` (default: the embedded configuration)"}
	return &cli.App{
		Name:      "ferry",
		Usage:     "a forward proxy: HTTP CONNECT, plain HTTP, SOCKS5, SOCKS4/4a and TCP forwarding, with plugins",
		Version:   versionString(),
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed once by main, with their exit code.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			runCommand(configFlag, stderr),
			checkCommand(configFlag, stdout),
			pluginsCommand(stdout),
			healthCommand(stdout),
			caCommand(stdout),
			versionCommand(stdout),
		},
	}
}

// runCommand is `ferry run`; runCmd does the work.
func runCommand(configFlag cli.Flag, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the proxy until SIGINT or SIGTERM",
		Description: "Without -c, ferry runs its embedded configuration: one listener on 127.0.0.1:8080\n" +
			"speaking HTTP proxy, SOCKS5 and SOCKS4 on the same port, dialing targets directly,\n" +
			"with an access log on stderr. Flags override the file.\n\n" +
			"SIGHUP reloads the file: unchanged listen addresses keep their sockets, new\n" +
			"connections get the new listeners and plugins, live ones are not cut, and a\n" +
			"file with problems is refused with the running configuration kept.\n" +
			"SIGINT or SIGTERM drain for drain_timeout and exit; a second one ends the drain.",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringSliceFlag{Name: "listen", Aliases: []string{"l"}, Usage: "listen on `ADDR` (host:port) instead of the configured listeners; repeatable, each a copy of the first listener"},
			&cli.StringSliceFlag{Name: "upstream", Aliases: []string{"u"}, Usage: "send requests no route matches through the proxy at `URL` (socks5://, http://, https://, with user:pass@ if needed); repeat for a chain, first hop first"},
			&cli.StringFlag{Name: "log-level", Usage: "`LEVEL`: debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Usage: "`FORMAT`: console or json"},
		},
		Action: func(c *cli.Context) error { return runCmd(c, stderr) },
	}
}

// checkCommand is `ferry check`.
func checkCommand(configFlag cli.Flag, stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "validate a configuration file and exit",
		ArgsUsage: " ",
		Description: "Loads the file as `ferry run` would, including every plugin's own settings,\n" +
			"and tries to bind each listener and the admin address, unless the running ferry\n" +
			"already holds it. Prints a summary and exits 0, or prints each problem as\n" +
			"FILE:LINE:COL: key: message and exits 1.",
		Flags: []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c.String("config"))
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			srv, err := server.New(cfg, zerolog.Nop())
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			warnings := srv.Warnings()
			srv.Close()
			bindWarnings, err := checkBinds(cfg)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			warnings = append(warnings, bindWarnings...)
			fmt.Fprintln(stdout, cfg.Summary())
			for _, w := range warnings {
				fmt.Fprintln(stdout, "warning:", w)
			}
			return nil
		},
	}
}

// pluginsCommand is `ferry plugins`.
func pluginsCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "plugins",
		Usage: "list the compiled-in plugin types",
		Action: func(c *cli.Context) error {
			for _, r := range plugins.Registered() {
				fmt.Fprintf(stdout, "%-12s %s\n", r.Type, r.Description)
			}
			return nil
		},
	}
}

// versionCommand is `ferry version`.
func versionCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			fmt.Fprintln(stdout, "ferry", versionString())
			return nil
		},
	}
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v + " (" + runtime.Version() + ")"
}

// loadConfig loads path, or the embedded default when path is empty.
// When the file has problems, the plugins' own settings are checked too,
// so that every problem is reported at once.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default()
	}
	cfg, err := config.Load(path)
	var ce *config.Error
	if errors.As(err, &ce) && ce.Partial != nil {
		return nil, config.Join(err, server.CheckPlugins(ce.Partial))
	}
	return cfg, err
}

// runConfig loads the configuration `ferry run` was asked for, with its
// flags applied on top.
func runConfig(c *cli.Context) (*config.Config, error) {
	cfg, err := loadConfig(c.String("config"))
	if err != nil {
		return nil, err
	}
	if addrs := c.StringSlice("listen"); len(addrs) > 0 {
		if err := cfg.OverrideListen(addrs); err != nil {
			return nil, err
		}
	}
	if err := cfg.UpstreamsFromFlags(c.StringSlice("upstream")); err != nil {
		return nil, err
	}
	if v := c.String("log-level"); v != "" {
		cfg.Log.Level = v
	}
	if v := c.String("log-format"); v != "" {
		cfg.Log.Format = v
	}
	return cfg, nil
}

// newLogger builds ferry's logger; it is passed down, never global.
func newLogger(w io.Writer, lc config.Log) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(lc.Level))
	if err != nil || lc.Level == "" {
		return zerolog.Nop(), fmt.Errorf("log level %q: want debug, info, warn or error", lc.Level)
	}
	switch lc.Format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339Nano, NoColor: !isTerminal(w)}
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: want console or json", lc.Format)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
