package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestState(t *testing.T) {
	const l0 = "[[listener]]\nlisten = \"127.0.0.1:8080\"\n"
	dir := t.TempDir()
	file := filepath.Join(dir, "ferry.toml")
	notDir := filepath.Join(dir, "plain")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		src     string
		want    State
		wantDir string
		wantErr []string
	}{
		{name: "absent: embedded next to the config", src: l0,
			want:    State{OnError: "fail_open", FlushInterval: Duration(time.Second), Lease: Duration(15 * time.Second)},
			wantDir: filepath.Join(dir, "state")},
		{name: "relative dir", src: "[state]\ndir = \"data/q\"\non_error = \"fail_closed\"\nflush_interval = \"250ms\"\n" + l0,
			want:    State{Dir: "data/q", OnError: "fail_closed", FlushInterval: Duration(250 * time.Millisecond), Lease: Duration(15 * time.Second)},
			wantDir: filepath.Join(dir, "data/q")},
		{name: "redis", src: "[state]\nurl = \"rediss://u:p@127.0.0.1:6380/2\"\n" + l0,
			want: State{URL: "rediss://u:p@127.0.0.1:6380/2", OnError: "fail_open", FlushInterval: Duration(time.Second), Lease: Duration(15 * time.Second)}},
		{name: "every problem at once", src: "[state]\nurl = \"http://x\"\ndir = \"d\"\non_error = \"open\"\nflush_interval = \"1h\"\nlease = \"1s\"\n" + l0,
			wantErr: []string{
				`ferry.toml:2:1: state.url: scheme "http": want redis://, rediss:// or redis+sentinel://`,
				`ferry.toml:3:1: state.dir: has no effect with state.url`,
				`ferry.toml:4:1: state.on_error: unknown value "open": want "fail_open" or "fail_closed"`,
				`ferry.toml:5:1: state.flush_interval: must be between 100ms and 1m0s, got 1h0m0s`,
				`ferry.toml:6:1: state.lease: must be between 3s and 10m0s, got 1s`,
			}},
		{name: "sentinel", src: "[state]\nurl = \"redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/1\"\n" + l0,
			want: State{URL: "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/1", OnError: "fail_open", FlushInterval: Duration(time.Second), Lease: Duration(15 * time.Second)}},
		{name: "sentinel without master", src: "[state]\nurl = \"redis+sentinel://10.0.0.1:26379\"\n" + l0,
			wantErr: []string{`ferry.toml:2:1: state.url: want the master's name`}},
		{name: "sentinel without port", src: "[state]\nurl = \"redis+sentinel://10.0.0.1,10.0.0.2:26379/m\"\n" + l0,
			wantErr: []string{`ferry.toml:2:1: state.url: sentinel: invalid address "10.0.0.1"`}},
		{name: "no host", src: "[state]\nurl = \"redis:///0\"\n" + l0,
			wantErr: []string{`ferry.toml:2:1: state.url: missing host`}},
		{name: "bad database", src: "[state]\nurl = \"redis://h:6379/x\"\n" + l0,
			wantErr: []string{`ferry.toml:2:1: state.url: database "x"`}},
		{name: "dir is a file", src: "[state]\ndir = \"plain/sub\"\n" + l0,
			wantErr: []string{`ferry.toml:2:1: state.dir: ` + notDir + ` is not a directory`}},
		{name: "dir not writable", src: "[state]\ndir = \"ro/sub\"\n" + l0,
			wantErr: []string{`ferry.toml:2:1: state.dir: directory ` + readOnly + ` is not writable`}},
		{name: "unknown key", src: "[state]\npath = \"x\"\n" + l0,
			wantErr: []string{`ferry.toml:2:1: state.path: unknown key`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(file, []byte(tt.src))
			if len(tt.wantErr) > 0 {
				if os.Geteuid() == 0 && strings.Contains(tt.name, "writable") {
					t.Skip("root may write anywhere")
				}
				if err == nil {
					t.Fatalf("got no error, want %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), strings.Replace(w, "ferry.toml", file, 1)) {
						t.Errorf("got error\n%v\nwant one containing %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if c.State != tt.want {
				t.Errorf("got %+v, want %+v", c.State, tt.want)
			}
			if tt.wantDir != "" && c.StateDir() != tt.wantDir {
				t.Errorf("StateDir() = %q, want %q", c.StateDir(), tt.wantDir)
			}
		})
	}
}
