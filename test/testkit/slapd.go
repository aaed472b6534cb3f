package testkit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The directory a Slapd serves: users under ou=people, groups
// (groupOfNames, with memberOf kept on the users by the memberof overlay)
// under ou=groups, and a service account allowed to search.
const (
	LDAPSuffix      = "dc=example,dc=org"
	LDAPServiceDN   = "cn=ferry,ou=services," + LDAPSuffix
	LDAPServicePass = "service-secret"
	ldapAdminDN     = "cn=admin," + LDAPSuffix
	ldapAdminPass   = "admin-secret"
)

// LDAPUser is an entry uid=UID,ou=people of a Slapd, member of the
// groups cn=GROUP,ou=groups.
type LDAPUser struct {
	UID, Password string
	Groups        []string
}

// Slapd is an OpenLDAP server (Debian's slapd) on loopback, run as the
// current user from a generated slapd.conf, with a throwaway PKI: LDAPS
// at LDAPS, and plain LDAP with StartTLS at LDAP. Its cleanup kills it.
type Slapd struct {
	LDAPS, LDAP string // ldaps://127.0.0.1:PORT, ldap://127.0.0.1:PORT
	CAFile      string // the CA of its certificate

	bin, conf, urls string
	mu              sync.Mutex
	cmd             *exec.Cmd
	exited          chan struct{}
	out             bytes.Buffer // guarded by mu
}

// StartSlapd starts a Slapd holding users. Without slapd and ldapadd the
// test is skipped, or fails under CI=true (scripts/test.sh installs
// them: Debian's slapd and ldap-utils).
func StartSlapd(t testing.TB, users []LDAPUser) *Slapd {
	t.Helper()
	bin := NeedBin(t, "slapd")
	ldapadd := NeedBin(t, "ldapadd")
	dir := t.TempDir()
	caFile, certFile, keyFile := WritePKI(t, dir)
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	s := &Slapd{bin: bin, CAFile: caFile, conf: filepath.Join(dir, "slapd.conf")}
	writeFile(t, s.conf, slapdConf(dir, caFile, certFile, keyFile))
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("slapd output:\n%s", (&lockedWriter{mu: &s.mu, w: &s.out}).String())
		}
	})
	data := filepath.Join(dir, "data.ldif")
	writeFile(t, data, ldapData(users))
	// FreeAddr's ports are free when it returns, not when slapd binds
	// them: a test running beside this one can take one first. slapd
	// then exits, but the other listener may pass the wait for its port
	// before that, so only loading the data proves the ports are slapd's.
	// Either failure is tried again on new ports.
	for try := 1; ; try++ {
		s.LDAPS, s.LDAP = "ldaps://"+FreeAddr(t), "ldap://"+FreeAddr(t)
		s.urls = s.LDAPS + "/ " + s.LDAP + "/"
		err := s.start()
		if err == nil {
			var out []byte
			if out, err = s.load(ldapadd, data); err != nil {
				err = fmt.Errorf("ldapadd: %w: %s", err, out)
			}
		}
		if err == nil {
			break
		}
		s.Stop(t)
		if try == 3 {
			t.Fatal(err)
		}
		t.Logf("slapd, try %d: %v", try, err)
	}
	return s
}

// load adds the entries of the LDIF file data, as the directory's admin.
func (s *Slapd) load(ldapadd, data string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, ldapadd, "-x", "-H", s.LDAP, "-D", ldapAdminDN, "-w", ldapAdminPass, "-f", data).CombinedOutput()
}

// Start runs slapd (again, after Stop) and waits until both ports
// accept connections.
func (s *Slapd) Start(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// start is Start, its failure an error: slapd could not start, or exited
// before both its ports accepted (one was taken: slapd then exits
// without a word under -d 0).
func (s *Slapd) start() error {
	// -d 0: in the foreground, without debug output.
	cmd := exec.Command(s.bin, "-f", s.conf, "-h", s.urls, "-d", "0")
	w := &lockedWriter{mu: &s.mu, w: &s.out}
	cmd.Stdout, cmd.Stderr = w, w
	ownGroup(cmd)
	cmd.WaitDelay = 2 * time.Second
	exited := make(chan struct{})
	s.mu.Lock()
	running := s.cmd != nil
	if !running {
		s.cmd, s.exited = cmd, exited
	}
	s.mu.Unlock()
	if running {
		return errors.New("slapd already running")
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start slapd: %w", err)
	}
	go func() { cmd.Wait(); close(exited) }()
	for _, u := range []string{s.LDAPS, s.LDAP} {
		if err := waitListening(strings.TrimPrefix(strings.TrimPrefix(u, "ldaps://"), "ldap://"), exited); err != nil {
			return fmt.Errorf("slapd on %s: %w; output:\n%s", u, err, w.String())
		}
	}
	return nil
}

// Stop kills slapd (SIGKILL: the directory goes down at once, as in a
// crash) and waits for it to exit. The data stays for Start.
func (s *Slapd) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	killGroup(cmd)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("slapd (pid %d) did not exit within 10s of SIGKILL", cmd.Process.Pid)
	}
}

// waitListening dials addr until it accepts, for 10 seconds at most or
// until the server exited.
func waitListening(addr string, exited chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it listened")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening within 10s: %v", err)
		}
	}
}

// slapdConf is a slapd.conf for one mdb database in dir: the users'
// passwords readable only to bind (by anonymous auth), everything else
// to everyone who bound; memberOf kept by the overlay.
func slapdConf(dir, caFile, certFile, keyFile string) string {
	return fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
TLSCACertificateFile %[2]s
TLSCertificateFile %[3]s
TLSCertificateKeyFile %[4]s
database mdb
maxsize 10485760
suffix "%[5]s"
rootdn "%[6]s"
rootpw %[7]s
directory %[1]s/db
overlay memberof
access to attrs=userPassword
	by anonymous auth
	by * none
access to *
	by users read
	by * none
`, dir, caFile, certFile, keyFile, LDAPSuffix, ldapAdminDN, ldapAdminPass)
}

// ldapData is the LDIF of the directory: the suffix, the three
// organizational units, the service account, the users, then the groups
// (after their members, for the memberof overlay).
func ldapData(users []LDAPUser) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n", LDAPSuffix)
	for _, ou := range []string{"people", "groups", "services"} {
		fmt.Fprintf(&b, "dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n", ou, LDAPSuffix, ou)
	}
	fmt.Fprintf(&b, "dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: ferry\nuserPassword: %s\n\n",
		LDAPServiceDN, SSHA(LDAPServicePass))
	members := map[string][]string{}
	var groups []string
	for _, u := range users {
		dn := LDAPUserDN(u.UID)
		fmt.Fprintf(&b, "dn: %s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nuserPassword: %s\n\n",
			dn, u.UID, u.UID, u.UID, SSHA(u.Password))
		for _, g := range u.Groups {
			if members[g] == nil {
				groups = append(groups, g)
			}
			members[g] = append(members[g], dn)
		}
	}
	for _, g := range groups {
		fmt.Fprintf(&b, "dn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\ncn: %s\n", g, LDAPSuffix, g)
		for _, m := range members[g] {
			fmt.Fprintf(&b, "member: %s\n", m)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// LDAPUserDN is the DN of the user uid.
func LDAPUserDN(uid string) string { return "uid=" + uid + ",ou=people," + LDAPSuffix }

// SSHA is the {SSHA} userPassword value of password (salted SHA-1, as
// slappasswd makes it).
func SSHA(password string) string {
	salt := make([]byte, 8)
	rand.Read(salt)
	sum := sha1.Sum(append([]byte(password), salt...))
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(sum[:], salt...))
}

// NeedBin finds a program on PATH or in /usr/sbin; without it the test
// is Unmet.
func NeedBin(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := "/usr/sbin/" + name; IsFile(p) {
		return p
	}
	Unmet(t, "%s not installed (scripts/test.sh installs it)", name)
	return ""
}

// Unmet ends a test whose precondition is missing: skipped on a
// developer's machine, failed under CI=true, where scripts/test.sh has
// provided it and its absence is a bug in the setup.
func Unmet(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("under CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

// IsFile reports whether p is a regular file.
func IsFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
