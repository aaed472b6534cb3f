package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Intercepted HTTPS mode (-mode mitm): GET requests through an HTTP
// proxy that intercepts TLS (ferry's mitm plugin, mitmproxy's mitmdump),
// with Go's HTTP client, which speaks CONNECT to the proxy and TLS inside
// the tunnel, trusting -origin-ca (the proxy's CA, which signs the
// leaves the proxy presents). Protocols:
//
//	h1    HTTP/1.1, one keep-alive connection (one tunnel) per worker
//	h2    HTTP/2, every worker's requests multiplexed on one connection
//	http  plain http:// requests through the same proxy to -origin (the
//	      reference: what a request costs the proxy without TLS)
//
// The origin (nginx in scripts/bench.sh) serves the object of n bytes at
// /n over TLS as -origin-tls (a name the proxy intercepts, with its port)
// and in plain HTTP at -origin.

// mitmClient returns the transports of a run and the URL of the object
// of size bytes: one transport per worker for h1 and http, one for all
// for h2.
func (b *bench) mitmClient(size int64) (transports []*http.Transport, target string, err error) {
	c := b.cfg
	proxy := &url.URL{Scheme: "http", Host: c.proxy}
	path := "/" + strconv.FormatInt(size, 10)
	roots, err := loadRoots("-origin-ca", c.originCA)
	if err != nil {
		return nil, "", err
	}
	tlsCfg := &tls.Config{RootCAs: roots}
	newTransport := func(h2 bool) *http.Transport {
		t := &http.Transport{
			Proxy:               http.ProxyURL(proxy),
			TLSClientConfig:     tlsCfg.Clone(),
			ForceAttemptHTTP2:   h2,
			MaxConnsPerHost:     1,
			MaxIdleConnsPerHost: 1,
			DisableCompression:  true,
			TLSHandshakeTimeout: c.dialTO,
			IdleConnTimeout:     time.Minute,
		}
		if !h2 {
			t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no HTTP/2
			t.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		return t
	}
	switch c.proto {
	case "h2":
		return []*http.Transport{newTransport(true)}, "https://" + c.originTLS + path, nil
	case "h1", "http":
		target = "https://" + c.originTLS + path
		if c.proto == "http" {
			target = "http://" + c.origin + path
		}
		for range c.conc {
			transports = append(transports, newTransport(false))
		}
		return transports, target, nil
	}
	return nil, "", fmt.Errorf("-proto %q: want h1, h2 or http in mitm mode", c.proto)
}

// mitmGet runs one request and reads the whole body, which must be want
// bytes with status 200.
func mitmGet(client *http.Client, target string, want int64) error {
	resp, err := client.Get(target)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, want+1))
	switch {
	case err != nil:
		return fmt.Errorf("body: %w", err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case n != want:
		return fmt.Errorf("body of %d bytes, want %d", n, want)
	}
	return nil
}

// mitmLoad measures one object size: cfg.conc workers, each one request
// at a time, for cfg.duration or cfg.count requests, after cfg.warmup
// requests spread over the workers (which opens every connection and
// tunnel, and fills the proxy's certificate cache, before measuring).
func (b *bench) mitmLoad(size int64) *Result {
	r := &Result{Concurrency: b.cfg.conc, ObjectBytes: size}
	transports, target, err := b.mitmClient(size)
	if err != nil {
		r.fail(err)
		return r
	}
	defer func() {
		for _, t := range transports {
			t.CloseIdleConnections()
		}
	}()
	clients := make([]*http.Client, b.cfg.conc)
	for w := range clients {
		clients[w] = &http.Client{Transport: transports[w%len(transports)], Timeout: b.cfg.timeout}
	}
	if err := warmUp(clients, target, size, max(1, b.cfg.warmup/b.cfg.conc)); err != nil {
		r.fail(fmt.Errorf("warm-up: %w", err))
		return r
	}
	time.Sleep(b.cfg.settle)
	m := b.start()
	lr := b.drive(m, len(clients), func(w int) func(time.Time) error {
		return func(time.Time) error { return mitmGet(clients[w], target, size) }
	})
	b.stop(m, lr.elapsed, r)
	b.requestFigures(r, lr, size)
	return r
}

// warmUp runs n requests on every client at once (so that h2's workers
// share one connection rather than racing to open several).
func warmUp(clients []*http.Client, target string, size int64, n int) error {
	errs := make(chan error, len(clients))
	for _, c := range clients {
		go func() {
			var err error
			for i := 0; i < n && err == nil; i++ {
				err = mitmGet(c, target, size)
			}
			errs <- err
		}()
	}
	var all []error
	for range clients {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// checkMITM checks the flags of mitm mode.
func (c *config) checkMITM() error {
	switch {
	case c.proto != "h1" && c.proto != "h2" && c.proto != "http":
		return fmt.Errorf("-proto: %q, want h1, h2 or http in mitm mode", c.proto)
	case c.proto == "http" && c.origin == "":
		return fmt.Errorf("-origin: the origin's plain HTTP address, for -proto http")
	case c.proto != "http" && (c.originTLS == "" || c.originCA == ""):
		return fmt.Errorf("-origin-tls and -origin-ca: needed for -proto %s", c.proto)
	}
	return nil
}
