package config

import (
	"strings"
	"testing"
)

func TestAdmin(t *testing.T) {
	const l0 = "[[listener]]\nlisten = \"127.0.0.1:8080\"\n"
	tests := []struct {
		name    string
		src     string
		want    Admin
		wantErr string
	}{
		{name: "absent is off", src: l0, want: Admin{}},
		{name: "all keys", src: "[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"s3cret\"\npprof = true\n" + l0,
			want: Admin{Listen: "127.0.0.1:9090", Token: "s3cret", Pprof: true}},
		{name: "ipv6 listen", src: "[admin]\nlisten = \"[::1]:9090\"\n" + l0, want: Admin{Listen: "[::1]:9090"}},
		{name: "bad listen", src: "[admin]\nlisten = \"localhost\"\n" + l0,
			wantErr: `test.toml:2:1: admin.listen: invalid address "localhost": want host:port`},
		{name: "bad port", src: "[admin]\nlisten = \"127.0.0.1:99999\"\n" + l0,
			wantErr: `test.toml:2:1: admin.listen: invalid address "127.0.0.1:99999"`},
		{name: "unknown key", src: "[admin]\nlisten = \"127.0.0.1:9090\"\nauth = \"x\"\n" + l0,
			wantErr: "test.toml:3:1: admin.auth: unknown key"},
		{name: "pprof must be a bool", src: "[admin]\npprof = \"yes\"\n" + l0,
			wantErr: "test.toml:2:9: admin.pprof"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("test.toml", []byte(tt.src))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if c.Admin != tt.want {
				t.Fatalf("got %+v, want %+v", c.Admin, tt.want)
			}
		})
	}
}
