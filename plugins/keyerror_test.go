package plugins

import (
	"errors"
	"testing"
)

func TestKeyError(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantKey string // of the first part; "" when not a KeyError
		want    string
	}{
		{name: "errorf", err: Errorf("max_bytes", "must be at least %d", 1), wantKey: "max_bytes", want: "max_bytes: must be at least 1"},
		{name: "keyerr", err: KeyErr("file", errors.New("no such file")), wantKey: "file", want: "file: no such file"},
		{name: "keyerr nil", err: KeyErr("file", nil), want: ""},
		{name: "within key", err: Within("rule[2]", Errorf("find", "empty")), wantKey: "rule[2].find", want: "rule[2].find: empty"},
		{name: "within index", err: Within("rule", Errorf("[0]", "bad")), wantKey: "rule[0]", want: "rule[0]: bad"},
		{name: "within plain", err: Within("rule[1]", errors.New("bad")), wantKey: "rule[1]", want: "rule[1]: bad"},
		{name: "within joined", err: Within("r", errors.Join(Errorf("a", "x"), Errorf("b", "y"))), want: "r.a: x\nr.b: y"},
		{name: "within nil", err: Within("r", nil), want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if tt.err != nil {
				got = tt.err.Error()
			}
			if got != tt.want {
				t.Fatalf("Error: got %q, want %q", got, tt.want)
			}
			var ke *KeyError
			if tt.wantKey != "" && (!errors.As(tt.err, &ke) || ke.Key != tt.wantKey) {
				t.Fatalf("key: got %+v, want %q", ke, tt.wantKey)
			}
		})
	}
}
