package config

import (
	"strings"
	"testing"
)

// TestRouteGroupErrors: bad group conditions of routes are reported at
// their position, all at once; a route with a group is no catch-all.
func TestRouteGroupErrors(t *testing.T) {
	const head = "[[listener]]\nlisten = \"127.0.0.1:0\"\n"
	tests := []struct {
		name, routes string
		want         []string // lines of the error; none: valid
	}{
		{name: "valid", routes: "[[route]]\ngroup = [\"staff\", \"équipe\"]\nupstream = \"direct\"\n[[route]]\nreject = true\n"},
		{name: "empty list", routes: "[[route]]\ngroup = []\nupstream = \"direct\"\n",
			want: []string{"g.toml:4:1: route[0].group: empty: list groups, or leave group out to match every user"}},
		{name: "bad names", routes: "[[route]]\ngroup = [\"\", \"a b\", \"c\\u0007\"]\nupstream = \"direct\"\n",
			want: []string{
				"g.toml:4:10: route[0].group[0]: empty group name",
				`g.toml:4:14: route[0].group[1]: group name "a b" contains whitespace`,
				`g.toml:4:21: route[0].group[2]: group name "c\a" contains a control character`,
			}},
		{name: "not a list", routes: "[[route]]\ngroup = \"staff\"\nupstream = \"direct\"\n",
			want: []string{"g.toml:4:9: route[0].group: must be an array, not a string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("g.toml", []byte(head+tt.routes))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error\n%v\nwant a line\n%s", err, w)
				}
			}
		})
	}
}
