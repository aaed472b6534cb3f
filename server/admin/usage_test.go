package admin

import (
	"fmt"
	"sort"
	"testing"

	"ferry/plugins"
)

func TestBoundUsage(t *testing.T) {
	var us []plugins.Usage
	for i := range 25 {
		us = append(us, plugins.Usage{Plugin: "q", Quota: "daily", Per: "user", Subject: fmt.Sprintf("u%02d", i), Used: int64(i)})
	}
	for i := range 25 {
		us = append(us, plugins.Usage{Plugin: "q", Quota: "team", Per: "group", Subject: fmt.Sprintf("g%02d", i), Used: int64(i)})
	}
	us = append(us, plugins.Usage{Plugin: "q", Quota: "addr", Per: "client", Subject: "192.0.2.1", Used: 7})
	tests := []struct {
		name      string
		n         int
		wantUsers []string // users named, sorted
		wantOther int64    // the users' "_other" sum; -1: none
		wantRest  int      // series for groups and clients
	}{
		{name: "top 3 users, every group", n: 3, wantUsers: []string{"_other", "u22", "u23", "u24"}, wantOther: 21 * 22 / 2, wantRest: 26},
		{name: "all fit", n: 100, wantOther: -1, wantRest: 26},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := boundUsage(append([]plugins.Usage(nil), us...), tt.n)
			var users []string
			rest := 0
			other := int64(-1)
			for _, u := range got {
				switch {
				case u.Per != "user":
					rest++
				case u.Subject == "_other":
					other = u.Used
					users = append(users, u.Subject)
				default:
					users = append(users, u.Subject)
				}
			}
			sort.Strings(users)
			if tt.wantUsers != nil && fmt.Sprint(users) != fmt.Sprint(tt.wantUsers) {
				t.Errorf("users %v, want %v", users, tt.wantUsers)
			}
			if other != tt.wantOther || rest != tt.wantRest {
				t.Errorf("_other %d and %d other series, want %d and %d", other, rest, tt.wantOther, tt.wantRest)
			}
		})
	}
}
