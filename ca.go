package main

// `ferry ca` makes and shows the certificate authority TLS interception
// signs its leaf certificates with:
//
//	ferry ca init --out /etc/ferry/ca    # writes ca.pem and ca-key.pem
//	ferry ca show --dir /etc/ferry/ca    # subject, validity, fingerprint, install hints
//
// The key is written 0600 in a directory created 0700, and never over an
// existing file without --force. Clients must trust ca.pem; ca-key.pem
// must stay on the proxy.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"ferry/plugins/mitm"
	"ferry/plugins/pkg/safefile"
)

const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// caCommand is `ferry ca` with its subcommands init and show.
func caCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "make or show the certificate authority for TLS interception",
		Description: "TLS interception presents clients a certificate for each host, signed by a\n" +
			"CA of your own that the clients must trust. `ferry ca init` makes one,\n" +
			"`ferry ca show` prints its fingerprint and how to install it on clients.",
		Subcommands: []*cli.Command{
			{
				Name:      "init",
				Usage:     "make a new CA: DIR/ca.pem (certificate) and DIR/ca-key.pem (private key)",
				ArgsUsage: " ",
				Description: "Makes an ECDSA P-256 CA certificate and key. The directory is created 0700 if\n" +
					"missing, the key is written 0600 and the certificate 0644. Existing files are\n" +
					"never overwritten without --force.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "write the files into `DIR`"},
					&cli.StringFlag{Name: "name", Value: "ferry interception CA", Usage: "the CA's common `NAME`, shown to users inspecting a certificate"},
					&cli.IntFlag{Name: "days", Value: 3650, Usage: "validity in `DAYS`"},
					&cli.BoolFlag{Name: "force", Usage: "overwrite existing files (clients trusting the old CA must then trust the new one)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return cli.Exit(fmt.Sprintf("ca init: unexpected argument %q (use --out)", c.Args().First()), 1)
					}
					return caInit(stdout, c.String("out"), c.String("name"), c.Int("days"), c.Bool("force"))
				},
			},
			{
				Name:      "show",
				Usage:     "print a CA certificate's subject, validity and fingerprint, and how to install it",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dir", Aliases: []string{"d"}, Value: ".", Usage: "the `DIR` holding ca.pem"},
					&cli.StringFlag{Name: "cert", Usage: "the certificate `FILE` (default: DIR/ca.pem)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return cli.Exit(fmt.Sprintf("ca show: unexpected argument %q (use --dir or --cert)", c.Args().First()), 1)
					}
					certFile := c.String("cert")
					keyFile := ""
					if certFile == "" {
						certFile = filepath.Join(c.String("dir"), caCertFile)
						keyFile = filepath.Join(c.String("dir"), caKeyFile)
					}
					return caShow(stdout, certFile, keyFile)
				},
			},
		},
	}
}

// caInit writes a new CA into dir.
func caInit(stdout io.Writer, dir, name string, days int, force bool) error {
	if dir == "" {
		return cli.Exit("ca init: --out: empty directory", 1)
	}
	if days <= 0 || days > 100*365 {
		return cli.Exit(fmt.Sprintf("ca init: --days %d: want 1 to 36500", days), 1)
	}
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	if !force {
		// Check both before writing either, so a refusal changes nothing.
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return cli.Exit(fmt.Sprintf("ca init: %s exists: not overwriting it without --force", p), 1)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return cli.Exit(fmt.Sprintf("ca init: %v", err), 1)
			}
		}
	}
	certPEM, keyPEM, err := mitm.NewCA(name, time.Duration(days)*24*time.Hour)
	if err != nil {
		return cli.Exit(fmt.Sprintf("ca init: %v", err), 1)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return cli.Exit(fmt.Sprintf("ca init: %v", err), 1)
	}
	// The key first: a certificate without its key is no use.
	if err := writeFile(keyPath, keyPEM, 0o600, force); err != nil {
		return cli.Exit(fmt.Sprintf("ca init: %v", err), 1)
	}
	if err := writeFile(certPath, certPEM, 0o644, force); err != nil {
		if !force {
			os.Remove(keyPath) // ours: it was created with O_EXCL
		}
		return cli.Exit(fmt.Sprintf("ca init: %v", err), 1)
	}
	cert, err := mitm.ParseCertPEM(certPEM)
	if err != nil {
		return cli.Exit(fmt.Sprintf("ca init: %v", err), 1)
	}
	fmt.Fprintf(stdout, "created CA %q, valid until %s\n", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "certificate:         %s (install it on clients: ferry ca show --dir %s)\n", certPath, dir)
	fmt.Fprintf(stdout, "private key:         %s (keep it secret)\n", keyPath)
	fmt.Fprintf(stdout, "SHA-256 fingerprint: %s\n", mitm.CertFingerprint(cert))
	return nil
}

// writeFile writes data to path with mode, whatever the umask. Without
// force the file must not exist (O_EXCL). With force it replaces any
// existing file at once (write a temporary file, then rename), so a
// failure leaves the old file whole.
func writeFile(path string, data []byte, mode fs.FileMode, force bool) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		err = f.Chmod(mode)
		if err == nil {
			_, err = f.Write(data)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*") // 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// caShow prints what certFile holds and how to install it. keyFile,
// when set and present, is checked for permissions others can read.
func caShow(stdout io.Writer, certFile, keyFile string) error {
	data, err := safefile.ReadFile(certFile, safefile.MaxCert)
	if err != nil {
		return cli.Exit(fmt.Sprintf("ca show: %v", err), 1)
	}
	cert, err := mitm.ParseCertPEM(data)
	if err != nil {
		return cli.Exit(fmt.Sprintf("ca show: %s: %v", certFile, err), 1)
	}
	now := time.Now()
	state := "valid"
	switch {
	case now.Before(cert.NotBefore):
		state = "NOT YET VALID"
	case now.After(cert.NotAfter):
		state = "EXPIRED"
	}
	w := func(format string, args ...any) { fmt.Fprintf(stdout, format+"\n", args...) }
	w("certificate:         %s", certFile)
	w("subject:             %s", cert.Subject)
	if cert.Issuer.String() != cert.Subject.String() {
		w("issuer:              %s", cert.Issuer)
	}
	w("valid:               %s to %s (%s)", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), state)
	w("SHA-256 fingerprint: %s", mitm.CertFingerprint(cert))
	if !cert.IsCA || !cert.BasicConstraintsValid {
		w("warning: this is not a CA certificate: ferry cannot sign leaves with it")
	}
	if keyFile != "" {
		if st, err := os.Stat(keyFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			w("warning: %s is readable by others (mode %04o): chmod 600 %s", keyFile, st.Mode().Perm(), keyFile)
		}
	}
	w("")
	w("Install the certificate on each client whose TLS ferry intercepts, then check")
	w("that the fingerprint the client shows is the one above:")
	w("  Debian/Ubuntu: sudo cp %s /usr/local/share/ca-certificates/ferry.crt && sudo update-ca-certificates", certFile)
	w("  curl:          curl --cacert %s https://example.com/  (or set CURL_CA_BUNDLE)", certFile)
	w("  Firefox:       Settings > Privacy & Security > Certificates > View Certificates >")
	w("                 Authorities > Import, and trust it to identify websites")
	w("  Chrome:        Settings > Privacy and security > Security > Manage certificates > Import;")
	w("                 on Linux, or for Firefox profiles, with NSS certutil:")
	w("                 certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n ferry -i %s", certFile)
	w("")
	w("The private key (%s) must stay secret, on the proxy only: whoever holds it can", caKeyFile)
	w("impersonate any site to every client that trusts this certificate.")
	return nil
}
