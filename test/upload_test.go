//go:build linux

package test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCurlUploads puts files to nginx (WebDAV PUT, which answers only
// once it has stored the whole body) through ferry's plain HTTP proxy
// with curl, and compares what nginx stored with what curl sent:
//   - 16 MiB with a Content-Length, more than buffer_size, so ferry
//     splices most of it; twice on one connection, which must stay open
//     after the first;
//   - the same chunked, which ferry decodes and passes on as it came;
//   - 384 KiB at 96 KiB/s, more than buffer_size (a smaller body is read
//     whole before it goes), over twice idle_timeout in total with bytes
//     moving all along (curl sends 64 KiB every 0.67 s): the wait for
//     nginx's answer must not time out while the body still moves.
func TestCurlUploads(t *testing.T) {
	t.Parallel()
	needCurl(t)
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	origin, ndir := runNginx(t, nginxSite{server: fmt.Sprintf(`        client_max_body_size 64m;
        location / {
            root %s;
            dav_methods PUT;
        }`, www)})
	// nginx's workers run as nobody when the tests run as root: they
	// must reach the body's temporary file and write the stored one.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(ndir), 0o755}, {ndir, 0o755}, {filepath.Dir(www), 0o755}, {www, 0o777}} {
		if err := os.Chmod(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx's error log:\n%s", mustRead(t, filepath.Join(ndir, "error.log")))
		}
	})
	f := startFerry(t, withJSON(`idle_timeout = "1500ms"`), nil)

	big := randomFile(t, dir, "big", 16<<20)
	slow := randomFile(t, dir, "slow", 384<<10)
	proxy := []string{"-x", "http://" + f.addr, "-o", "/dev/null", "-w", "%{http_code} %{size_upload} %{num_connects}\n"}
	put := func(name, file string, more ...string) []string {
		return append(append(append([]string{}, proxy...), more...), "-T", file, "http://"+origin+"/"+name)
	}

	cases := []struct {
		name string
		args []string
		want string // curl's -w lines
		file map[string]string
	}{
		{
			name: "16 MiB twice on one connection",
			args: append(append(put("a", big), "--next"), put("b", big)...),
			want: fmt.Sprintf("201 %d 1\n201 %d 0\n", 16<<20, 16<<20),
			file: map[string]string{"a": big, "b": big},
		},
		{
			name: "16 MiB chunked",
			args: put("c", big, "-H", "Transfer-Encoding: chunked"),
			file: map[string]string{"c": big},
		},
		{
			name: "slower than idle_timeout in total",
			args: put("d", slow, "--limit-rate", "96K"),
			want: fmt.Sprintf("201 %d 1\n", 384<<10),
			file: map[string]string{"d": slow},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out := curl(t, c.args...)
			if c.want != "" && out != c.want {
				t.Errorf("curl: got %q, want %q", out, c.want)
			}
			if !strings.HasPrefix(out, "201 ") {
				t.Fatalf("curl: got %q, want 201 Created", out)
			}
			for name, src := range c.file {
				sameFile(t, filepath.Join(www, name), src)
			}
		})
	}
}

// randomFile writes size random bytes to dir/name and returns its path.
func randomFile(t *testing.T, dir, name string, size int) string {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	path := filepath.Join(dir, name)
	writeFile(t, path, string(b))
	return path
}

// sameFile fails t unless got holds what want holds.
func sameFile(t *testing.T, got, want string) {
	t.Helper()
	g, err := os.ReadFile(got)
	if err != nil {
		t.Fatalf("the origin stored nothing: %v", err)
	}
	w := mustRead(t, want)
	if !bytes.Equal(g, []byte(w)) {
		t.Fatalf("%s: the origin stored %d bytes that differ from the %d sent", filepath.Base(got), len(g), len(w))
	}
}
