//go:build unix

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small.pem")
	if err := os.WriteFile(small, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		max     int64
		want    string
		wantErr error
		msg     string
	}{
		{name: "regular", path: small, max: MaxCert, want: "hello"},
		{name: "exactly the cap", path: small, max: 5, want: "hello"},
		{name: "over the cap", path: big, max: MaxCert, wantErr: ErrTooLarge, msg: "big.pem: 2 MiB, over the size limit of 1 MiB for this file"},
		{name: "fifo", path: fifo, max: MaxList, wantErr: ErrNotRegular, msg: "fifo: not a regular file but a FIFO"},
		{name: "device", path: "/dev/zero", max: MaxCert, wantErr: ErrNotRegular, msg: "/dev/zero: not a regular file but a character device"},
		{name: "directory", path: dir, max: MaxList, wantErr: ErrNotRegular, msg: "not a regular file but a directory"},
		// /proc files say they are empty: the cap holds while reading.
		{name: "lying size", path: "/proc/self/maps", max: 10, wantErr: ErrTooLarge, msg: "maps: more than 10 bytes, over the size limit of 10 bytes"},
		{name: "missing", path: filepath.Join(dir, "nope"), max: MaxList, wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			got, err := ReadFile(tt.path, tt.max)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %v", d)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("got %q, want it to contain %q", err, tt.msg)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}
