package match

import (
	"strings"
	"testing"
)

func TestCheckGroup(t *testing.T) {
	tests := []struct {
		name, group, wantErr string
	}{
		{name: "plain", group: "staff"},
		{name: "punctuation", group: "ops-eu_1.x@corp"},
		{name: "unicode", group: "équipe"},
		{name: "max length", group: strings.Repeat("g", MaxGroupLen)},
		{name: "empty", group: "", wantErr: "empty group name"},
		{name: "too long", group: strings.Repeat("g", MaxGroupLen+1), wantErr: "longer than 255 bytes"},
		{name: "space", group: "a b", wantErr: "contains whitespace"},
		{name: "tab", group: "a\tb", wantErr: "contains whitespace"},
		{name: "no-break space", group: "a\u00a0b", wantErr: "contains whitespace"},
		{name: "newline", group: "a\n", wantErr: "contains whitespace"},
		{name: "nul", group: "a\x00", wantErr: "contains a control character"},
		{name: "del", group: "a\x7f", wantErr: "contains a control character"},
		{name: "c1 control", group: "a\u0085b", wantErr: "contains whitespace"},
		{name: "bad utf-8", group: "a\xffb", wantErr: "is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckGroup(tt.group)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				var g Group
				if err := g.UnmarshalText([]byte(tt.group)); err != nil || string(g) != tt.group {
					t.Fatalf("UnmarshalText got %q, %v", g, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRuleGroup(t *testing.T) {
	r := &Rule{Group: []Group{"staff", "ops"}, Port: Ports{{Lo: 443, Hi: 443}}}
	tests := []struct {
		name string
		q    Query
		want Result
	}{
		{name: "in one", q: Query{User: "a", Groups: []string{"dev", "ops"}, Port: 443}, want: Yes},
		{name: "in none", q: Query{User: "a", Groups: []string{"dev"}, Port: 443}, want: No},
		{name: "no groups", q: Query{User: "a", Port: 443}, want: No},
		{name: "no user", q: Query{Groups: []string{"staff"}, Port: 443}, want: No},
		{name: "case differs", q: Query{User: "a", Groups: []string{"STAFF"}, Port: 443}, want: No},
		{name: "other condition fails", q: Query{User: "a", Groups: []string{"staff"}, Port: 80}, want: No},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Eval(tt.q); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
