package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"ferry/config"
	"ferry/server"
	"ferry/server/admin"
)

// runCmd is `ferry run`: it builds the server and, when [admin] listen is
// set, the admin service, starts them, reloads on SIGHUP, and on SIGINT
// or SIGTERM drains and exits.
func runCmd(c *cli.Context, stderr io.Writer) error {
	cfg, err := runConfig(c)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	log, err := newLogger(stderr, cfg.Log)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}

	srv, err := server.New(cfg, log)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	r := &runner{c: c, log: log, srv: srv, cfg: cfg}
	r.rl = &reloader{run: r.apply}
	if err := r.openAdmin(cfg); err != nil {
		srv.Close()
		return cli.Exit(err.Error(), 1)
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := r.start(cfg); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	r.shutdown(r.waitSignal(sigs), sigs)
	return nil
}

// runner is one `ferry run`: the server, the admin service if any, and
// the reloads that SIGHUP and POST /reload ask for.
//
// Its parts are wired once, at construction, and one way: the admin
// service is handed r.reload when it is built and calls nothing else of
// main; main calls the admin service (Reload, to count SIGHUP reloads
// too; SetStopping; Shutdown). Nothing is re-assigned afterwards.
type runner struct {
	c   *cli.Context // the flags every reload applies again
	log zerolog.Logger
	srv *server.Server
	rl  *reloader // runs apply, one at a time, with a deadline

	adm   *admin.Admin // nil without [admin] listen
	admLn net.Listener // adm's, bound before the server starts

	cfgMu sync.Mutex // guards cfg; never held while loading
	cfg   *config.Config
}

// apply re-reads the file, with the same flags on top, and applies it:
// the reloader's run. Log and admin settings apply at the next start.
func (r *runner) apply() error {
	next, err := runConfig(r.c)
	if err == nil {
		err = listenError(next, r.srv.Reload(next))
	}
	if err != nil {
		return err
	}
	r.cfgMu.Lock()
	r.cfg = next
	r.cfgMu.Unlock()
	r.log.Info().Str("config", next.File).Int("listeners", len(next.Listeners)).Int("plugins", len(next.Plugins)).Msg("configuration reloaded")
	return nil
}

// reload runs one reload through the reloader, apart from the caller
// and with a deadline, and logs a failure. It is the admin service's
// admin.ReloadFunc.
func (r *runner) reload() error {
	err := r.rl.reload()
	if err != nil {
		r.log.Error().Str("error", err.Error()).Msg("reload failed: the running configuration stays")
	}
	return err
}

// reloadOnSignal answers SIGHUP: through the admin service when there is
// one, so that ferry_reloads_total counts SIGHUP reloads as it counts
// POST /reload; it logs, and returns nothing.
func (r *runner) reloadOnSignal() {
	if r.adm != nil {
		_ = r.adm.Reload()
		return
	}
	_ = r.reload()
}

// openAdmin builds the admin service when cfg sets [admin] listen and
// binds its address, so that the server refuses to proxy to it.
func (r *runner) openAdmin(cfg *config.Config) error {
	if cfg.Admin.Listen == "" {
		return nil
	}
	r.adm = admin.New(r.srv, cfg.Admin, r.reload, r.log.With().Str("component", "admin").Logger())
	r.srv.SetObserver(r.adm)
	ln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Where("admin.listen"), err)
	}
	r.admLn = ln
	r.srv.SetAdminAddr(ln.Addr()) // never reachable through the proxy
	return nil
}

// start starts the server's listeners, then serves the admin service.
// When a listener cannot be bound, it closes everything.
func (r *runner) start(cfg *config.Config) error {
	if err := r.srv.Start(); err != nil {
		if r.admLn != nil {
			r.admLn.Close()
		}
		r.srv.Close()
		return listenError(cfg, err)
	}
	r.log.Info().Str("version", versionString()).Str("config", cfg.File).
		Int64("max_connections", r.srv.MaxConnections()).Msg("ferry started")
	if r.adm != nil {
		r.log.Info().Str("addr", r.admLn.Addr().String()).Bool("auth", cfg.Admin.Token != "").Bool("pprof", cfg.Admin.Pprof).Msg("admin listening")
		go func() {
			if err := r.adm.Serve(r.admLn); err != nil {
				r.log.Error().Err(err).Msg("admin server stopped")
			}
		}()
	}
	return nil
}

// waitSignal reloads on each SIGHUP until SIGINT or SIGTERM, which it
// returns.
func (r *runner) waitSignal(sigs <-chan os.Signal) os.Signal {
	var sig os.Signal
	for sig = range sigs {
		if sig != syscall.SIGHUP {
			break
		}
		go r.reloadOnSignal() // it logs; the loop stays free for SIGTERM
	}
	return sig
}

// shutdown stops accepting and drains for drain_timeout (a second
// signal on sigs ends the drain), then stops the admin service.
func (r *runner) shutdown(sig os.Signal, sigs <-chan os.Signal) {
	if r.adm != nil {
		r.adm.SetStopping()
	}
	// A reload that has read its files finishes in moments; one stuck on
	// a file does not hold up the exit.
	if !r.rl.wait(2 * time.Second) {
		r.log.Warn().Msg("a reload is still running: shutting down without waiting for it")
	}
	r.cfgMu.Lock()
	drain := r.cfg.Defaults.DrainTimeout.D()
	r.cfgMu.Unlock()
	r.log.Info().Str("signal", sig.String()).Stringer("drain_timeout", drain).Msg("shutting down: no new connections, draining")
	go func() {
		// A second signal skips the drain.
		for s := range sigs {
			if s != syscall.SIGHUP {
				break
			}
		}
		r.log.Warn().Msg("second signal: closing all connections now")
		r.srv.Abort()
	}()
	sum := r.srv.Shutdown(drain)
	if r.adm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := r.adm.Shutdown(ctx); err != nil {
			r.log.Warn().Err(err).Msg("admin shutdown")
		}
		cancel()
	}
	r.log.Info().Int64("drained", sum.Drained).Int64("forced", sum.Forced).
		Stringer("took", sum.Took.Round(time.Millisecond)).Msg("ferry stopped")
}

// listenError gives a listener that could not be bound the position of
// its listen key in cfg's file; other errors pass as they are.
func listenError(cfg *config.Config, err error) error {
	var le *server.ListenError
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %w", cfg.Where(fmt.Sprintf("listener[%d].listen", le.Index)), le.Err)
	}
	return err
}
