package config

import (
	"strings"
	"testing"
)

func TestAllowLocalDestinations(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		want      bool
		wantErr   string
	}{
		{name: "default false", src: "[[listener]]\nlisten = \"0.0.0.0:8080\"\n"},
		{name: "set", src: "[[listener]]\nlisten = \"0.0.0.0:8080\"\nallow_local_destinations = true\n", want: true},
		{name: "not a bool", src: "[[listener]]\nlisten = \"0.0.0.0:8080\"\nallow_local_destinations = \"yes\"\n",
			wantErr: "test.toml:3:28: listener[0].allow_local_destinations"},
		{name: "tcp listener", src: "[[listener]]\nlisten = \"0.0.0.0:2222\"\nprotocols = [\"tcp\"]\ntarget = \"127.0.0.1:22\"\nallow_local_destinations = true\n",
			wantErr: "listener[0].allow_local_destinations: only proxy listeners check destinations"},
	} {
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
			if got := c.Listeners[0].AllowLocalDestinations; got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
