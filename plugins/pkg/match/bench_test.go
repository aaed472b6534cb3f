package match

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// millionList is a block list like real ones: a million names under a few
// thousand registrable domains, one in ten a wildcard.
func millionList(n int) []byte {
	var b bytes.Buffer
	b.Grow(n * 32)
	for i := range n {
		switch {
		case i%10 == 0:
			fmt.Fprintf(&b, "*.t%d.site%d.example\n", i, i%5000)
		case i%10 == 1:
			fmt.Fprintf(&b, "0.0.0.0 ads%d.site%d.example\n", i, i%5000)
		default:
			fmt.Fprintf(&b, "host%d.site%d.example\n", i, i%5000)
		}
	}
	return b.Bytes()
}

func loadMillion(tb testing.TB) *Domains {
	tb.Helper()
	var s Domains
	if _, err := s.Load(bytes.NewReader(millionList(1_000_000))); err != nil {
		tb.Fatal(err)
	}
	return &s
}

// TestDomainsMillionMemory reports what a million-name set costs; it
// asserts only generous bounds.
func TestDomainsMillionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a million names")
	}
	list := millionList(1_000_000)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	var s Domains
	n, err := s.Load(bytes.NewReader(list))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("loaded %d entries (%d names) in %v; heap +%.1f MiB (%.0f B/name)",
		n, s.Len(), took, float64(heap)/(1<<20), float64(heap)/float64(s.Len()))
	if n != 1_000_000 {
		t.Errorf("loaded %d entries, want 1000000", n)
	}
	if took > 30*time.Second {
		t.Errorf("load took %v, want < 30s", took)
	}
	if heap > 1<<30 {
		t.Errorf("heap grew %d bytes, want < 1 GiB", heap)
	}
	for _, host := range []string{"host999999.site4999.example", "x.t10.site10.example", "ads1.site1.example"} {
		if !s.Match(host) {
			t.Errorf("%s not matched", host)
		}
	}
	runtime.KeepAlive(list)
}

func BenchmarkDomainsLoadMillion(b *testing.B) {
	list := millionList(1_000_000)
	b.SetBytes(int64(len(list)))
	for b.Loop() {
		var s Domains
		if _, err := s.Load(bytes.NewReader(list)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDomainsMatchMillion(b *testing.B) {
	s := loadMillion(b)
	for _, bc := range []struct{ name, host string }{
		{"exact hit", "host123456.site3456.example"},
		{"wildcard hit", "a.b.t100.site100.example"},
		{"miss 3 labels", "www.example.com"},
		{"miss 6 labels", "a.b.c.d.example.com"},
		{"miss upper case", "WWW.Example.COM"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				s.Match(bc.host)
			}
		})
	}
}

func BenchmarkPrefixesContains(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		rnd := newRand(uint64(n))
		ps := make([]netip.Prefix, n)
		for i := range ps {
			var a [4]byte
			rnd.fill(a[:])
			ps[i] = netip.PrefixFrom(netip.AddrFrom4(a), 16+rnd.intn(17)).Masked()
		}
		set := NewPrefixes(ps...)
		addrs := make([]netip.Addr, 1024)
		for i := range addrs {
			var a [4]byte
			rnd.fill(a[:])
			addrs[i] = netip.AddrFrom4(a)
		}
		b.Run(fmt.Sprintf("v4 %d prefixes", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				set.Contains(addrs[i&1023])
				i++
			}
		})
		ps6 := make([]netip.Prefix, n)
		for i := range ps6 {
			var a [16]byte
			rnd.fill(a[:])
			ps6[i] = netip.PrefixFrom(netip.AddrFrom16(a), 32+rnd.intn(97)).Masked()
		}
		set6 := NewPrefixes(ps6...)
		addr6 := netip.MustParseAddr("2001:db8::1")
		b.Run(fmt.Sprintf("v6 %d prefixes", n), func(b *testing.B) {
			for b.Loop() {
				set6.Contains(addr6)
			}
		})
	}
}

func BenchmarkRuleEval(b *testing.B) {
	r, err := Compile(Spec{
		Client: []string{"10.0.0.0/8", "192.168.0.0/16"},
		Domain: []string{"*.corp.example", "intranet.example"},
		Dest:   []string{"10.0.0.0/8"},
		Port:   []string{"80", "443", "8000-8999"},
	})
	if err != nil {
		b.Fatal(err)
	}
	q := Query{Host: "git.corp.example", IP: netip.MustParseAddr("10.1.2.3"), Port: 443, Client: netip.MustParseAddr("192.168.1.10")}
	for b.Loop() {
		if r.Eval(q) != Yes {
			b.Fatal("no match")
		}
	}
}
