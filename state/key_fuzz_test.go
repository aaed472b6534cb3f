package state

import "testing"

// FuzzKey: any scope and subject (user names, group names, IPv6
// addresses, glob characters) survive the backend's key encoding, and
// decoding a foreign key never panics.
func FuzzKey(f *testing.F) {
	f.Add("quota/daily", "user:alice", int64(1733443200), "ferry:usage:a:b:1")
	f.Add("q/x", "client:::1", int64(-1), "ferry:usage:%zz:b:1")
	f.Add("a*b?[c]", "group:\\x00:", int64(0), "")
	f.Fuzz(func(t *testing.T, scope, subject string, end int64, foreign string) {
		k := Key{Scope: scope, Subject: subject, End: end}
		if got, ok := decode(encode(k)); !ok || got != k {
			t.Errorf("decode(encode(%+v)) = %+v, %v", k, got, ok)
		}
		decode(foreign)
	})
}
