package replace

import (
	"bytes"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// newTestStream compiles rules (all "up" unless set) into the stream one
// channel direction would get.
func newTestStream(t testing.TB, maxMatch int, rules ...Rule) *stream {
	t.Helper()
	for i := range rules {
		if rules[i].Direction == "" {
			rules[i].Direction = "up"
		}
	}
	var cfg Config
	cfg.Rules = rules
	if maxMatch > 0 {
		cfg.MaxMatch = sizePtr(maxMatch)
	}
	p, err := newPlugin("test", cfg)
	if err != nil {
		t.Fatalf("newPlugin: %v", err)
	}
	st := &stream{}
	for _, r := range p.up {
		st.stages = append(st.stages, stage{r: r})
	}
	return st
}

// runChunks pushes chunks through st as separate reads, then the final
// flush, and returns everything that came out. It fails if a stage ever
// holds more than bound bytes (0: no check).
func runChunks(t testing.TB, st *stream, bound int, chunks [][]byte) string {
	t.Helper()
	var out []byte
	for _, c := range chunks {
		in := bytes.Clone(c)
		out = append(out, st.push(in, false)...)
		// The hook's input is only valid during the call: scribble on it
		// to catch a stage that kept it.
		for i := range in {
			in[i] = '#'
		}
		if bound > 0 {
			for i, sg := range st.stages {
				if len(sg.held) > bound {
					t.Fatalf("stage %d holds %d bytes, bound %d", i, len(sg.held), bound)
				}
			}
		}
	}
	out = append(out, st.push(nil, true)...)
	return string(out)
}

func splitEvery(s string, n int) [][]byte {
	var out [][]byte
	for len(s) > n {
		out = append(out, []byte(s[:n]))
		s = s[n:]
	}
	return append(out, []byte(s))
}

func chunksOf(parts ...string) [][]byte {
	out := make([][]byte, len(parts))
	for i, p := range parts {
		out[i] = []byte(p)
	}
	return out
}

// TestRules runs each case three ways: with the given reads, byte by
// byte, and as one read.
func TestRules(t *testing.T) {
	lit := func(find, repl string) Rule { return Rule{Find: find, Replace: repl} }
	rx := func(expr, repl string) Rule { return Rule{Regexp: expr, Replace: repl} }
	tests := []struct {
		name     string
		rules    []Rule
		maxMatch int
		reads    []string
		want     string
	}{
		{"one read", []Rule{lit("nginx", "ferry")}, 0,
			[]string{"Server: nginx\r\n"}, "Server: ferry\r\n"},
		{"two reads", []Rule{lit("Server: nginx", "Server: ferry")}, 0,
			[]string{"HTTP/1.1 200 OK\r\nServer: ng", "inx\r\n\r\n"}, "HTTP/1.1 200 OK\r\nServer: ferry\r\n\r\n"},
		{"three reads", []Rule{lit("Server: nginx", "Server: ferry")}, 0,
			[]string{"Server", ": ngi", "nx!"}, "Server: ferry!"},
		{"several matches", []Rule{lit("ab", "X")}, 0,
			[]string{"abxa", "bab", "a", "b"}, "XxXXX"},
		{"false start", []Rule{lit("abc", "X")}, 0,
			[]string{"aba", "bc ab", "ab"}, "abX abab"},
		{"self-overlapping pattern", []Rule{lit("abab", "X")}, 0,
			[]string{"aba", "bab"}, "Xab"},
		{"non-overlapping leftmost", []Rule{lit("aa", "X")}, 0,
			[]string{"a", "aa", "aa"}, "XXa"},
		{"deletion", []Rule{lit("secret", "")}, 0,
			[]string{"a sec", "ret b"}, "a  b"},
		{"replacement contains the pattern", []Rule{lit("a", "aa")}, 0,
			[]string{"banana"}, "baanaanaa"},
		{"replacement is a pattern prefix", []Rule{lit("abc", "ab")}, 0,
			[]string{"ab", "c", "c"}, "abc"},
		{"rules chain in order", []Rule{lit("a", "b"), lit("b", "c")}, 0,
			[]string{"ab", "ba"}, "cccc"},
		{"overlapping rules: first wins", []Rule{lit("abc", "X"), lit("bcd", "Y")}, 0,
			[]string{"ab", "cd bcd"}, "Xd Y"},
		{"second rule sees the first's output", []Rule{lit("abc", "bc"), lit("bcd", "Y")}, 0,
			[]string{"a", "bc", "d"}, "Y"},
		{"regexp across reads", []Rule{rx(`User-Agent: [^\r\n]*`, "User-Agent: ferry")}, 0,
			[]string{"GET / HTTP/1.1\r\nUser-Ag", "ent: curl/8.", "5.0\r\nAccept: */*\r\n"},
			"GET / HTTP/1.1\r\nUser-Agent: ferry\r\nAccept: */*\r\n"},
		{"regexp greedy waits", []Rule{rx(`a+`, "X")}, 0,
			[]string{"baa", "aa", "ab"}, "bXb"},
		{"regexp leftmost-first", []Rule{rx(`foo|foobar`, "X")}, 0,
			[]string{"foo", "bar foob", "ar"}, "Xbar Xbar"},
		{"regexp longer alternative first", []Rule{rx(`foobar|foo`, "X")}, 0,
			[]string{"foo", "bar foob", "az"}, "X Xbaz"},
		{"regexp lazy", []Rule{rx(`<.*?>`, "T")}, 0,
			[]string{"a<b", "r>c<", "d>"}, "aTcT"},
		{"regexp submatches", []Rule{rx(`(\w+)@(?P<host>[a-z]+)\.com`, "${1} at ${host}")}, 0,
			[]string{"mail bob@exa", "mple.com now"}, "mail bob at example now"},
		{"regexp dollar", []Rule{rx(`USD ([0-9]+)`, "$$$1")}, 0,
			[]string{"cost: USD 1", "2"}, "cost: $12"},
		{"regexp case-insensitive", []Rule{rx(`(?i)server: nginx`, "Server: ferry")}, 0,
			[]string{"SERVER: N", "GINX"}, "Server: ferry"},
		{"regexp multibyte split", []Rule{rx(`é+`, "e")}, 0,
			[]string{"caf\xc3", "\xa9\xc3\xa9 ok"}, "cafe ok"},
		{"regexp negated class with multibyte", []Rule{rx(`[^a-z ]+`, "_")}, 0,
			[]string{"na\xc3", "\xafve x"}, "na_ve x"},
		{"regexp exactly max_match", []Rule{rx(`<[a-z]*>`, "T")}, 16,
			[]string{"x<abcdefghijklm", "n>y"}, "xTy"},
		{"regexp from the README", []Rule{rx(`(?i)(PASS) [^\r\n]+`, "$1 ********")}, 0,
			[]string{"USER bob\r\npass hun", "ter2\r\nPASV\r\n"}, "USER bob\r\npass ********\r\nPASV\r\n"},
		{"literal and regexp", []Rule{lit("cat", "dog"), rx(`d[a-z]g`, "D")}, 0,
			[]string{"a c", "at and a d", "ig"}, "a D and a D"},
		{"invalid UTF-8 passes", []Rule{rx(`x+`, "y")}, 0,
			[]string{"\xff\xfex", "x\xc3"}, "\xff\xfey\xc3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := chunksOf(tt.reads...)
			whole := strings.Join(tt.reads, "")
			for _, way := range []struct {
				name   string
				chunks [][]byte
			}{
				{"given reads", reads},
				{"byte by byte", splitEvery(whole, 1)},
				{"one read", chunksOf(whole)},
			} {
				st := newTestStream(t, tt.maxMatch, tt.rules...)
				if got := runChunks(t, st, 0, way.chunks); got != tt.want {
					t.Errorf("%s: got %q, want %q", way.name, got, tt.want)
				}
			}
		})
	}
}

// TestHoldsOnlyPossibleMatches: what goes on at once is everything that
// cannot be part of a match.
func TestHoldsOnlyPossibleMatches(t *testing.T) {
	tests := []struct {
		name     string
		rule     Rule
		maxMatch int
		read     string
		wantOut  string
	}{
		{"literal: no prefix at the end", Rule{Find: "nginx"}, 0, "hello world", "hello world"},
		{"literal: prefix at the end", Rule{Find: "nginx"}, 0, "hello ngi", "hello "},
		{"literal: longest prefix", Rule{Find: "aab"}, 0, "xaa", "x"},
		{"regexp: nothing in progress", Rule{Regexp: `User-Agent: [^\r\n]*`}, 0, "Host: x\r\n", "Host: x\r\n"},
		{"regexp: header in progress", Rule{Regexp: `User-Agent: [^\r\n]*`}, 0, "Host: x\r\nUser-Agent: cu", "Host: x\r\n"},
		{"regexp: bounded by max_match", Rule{Regexp: `[a-z]+!`}, 8, "abcdefghijkl", "abcde"},
		{"regexp: too long to track", Rule{Regexp: `<[a-z]*>`}, 8, "<abcdefghijkl", "<abcdefghijkl"},
		{"regexp: cut rune held", Rule{Regexp: `x`}, 0, "ab\xc3", "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rule.Replace = "R"
			st := newTestStream(t, tt.maxMatch, tt.rule)
			if got := string(st.push([]byte(tt.read), false)); got != tt.wantOut {
				t.Fatalf("got %q out, want %q (the rest held)", got, tt.wantOut)
			}
		})
	}
}

// randomSplit cuts b into reads of random sizes, some empty.
func randomSplit(rng *rand.Rand, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := rng.IntN(min(len(b), 12) + 1)
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func randomText(rng *rand.Rand, alphabet string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return b
}

// TestRandomChunking: any split of the input gives what replacing in the
// whole input gives, for literal rules and for regexps whose matches fit
// in max_match.
func TestRandomChunking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	literal := [][]Rule{
		{{Find: "ab", Replace: "X"}},
		{{Find: "aab", Replace: "b"}},
		{{Find: "abab", Replace: "ab"}},
		{{Find: "a", Replace: "aa"}, {Find: "aab", Replace: "c"}},
		{{Find: "abc", Replace: ""}, {Find: "bb", Replace: "b"}},
		{{Find: "caca", Replace: "ac"}, {Find: "aaa", Replace: "b"}, {Find: "cb", Replace: "bcb"}},
	}
	for i, rules := range literal {
		for range 300 {
			in := randomText(rng, "abc", rng.IntN(80))
			want := in
			for _, r := range rules {
				want = bytes.ReplaceAll(want, []byte(r.Find), []byte(r.Replace))
			}
			bound := 0
			for _, r := range rules {
				bound = max(bound, len(r.Find)-1)
			}
			st := newTestStream(t, 0, rules...)
			chunks := randomSplit(rng, in)
			if got := runChunks(t, st, bound, chunks); got != string(want) {
				t.Fatalf("rules %d, reads %q: got %q, want %q", i, chunks, got, want)
			}
		}
	}
	regexps := []struct{ expr, repl string }{
		{`a+b`, "X"},
		{`ab|abc|c`, "[$0]"},
		{`(a|b)c*a`, "<$1>"},
		{`b[^c]{0,4}c`, "Y"},
		{`c.*?cc`, "Z"},
		{`(?:ab)+`, "w"},
		{`[ab]{3}`, "t"},
	}
	const maxMatch = 256 // longer than any input, so every match is found
	for _, rx := range regexps {
		re := regexp.MustCompile(rx.expr)
		for range 300 {
			in := randomText(rng, "abc", rng.IntN(80))
			want := re.ReplaceAll(in, []byte(rx.repl))
			st := newTestStream(t, maxMatch, Rule{Regexp: rx.expr, Replace: rx.repl})
			chunks := randomSplit(rng, in)
			if got := runChunks(t, st, maxMatch-1, chunks); got != string(want) {
				t.Fatalf("%s, reads %q: got %q, want %q", rx.expr, chunks, got, want)
			}
		}
	}
}

// TestMaxMatchBound: however long a match in progress, a regexp rule
// holds fewer than max_match bytes, and output keeps every byte.
func TestMaxMatchBound(t *testing.T) {
	st := newTestStream(t, 16, Rule{Regexp: `<[^>]*>`, Replace: "T"})
	in := "<" + strings.Repeat("x", 100) + ">"
	got := runChunks(t, st, 15, splitEvery(in, 3))
	// Not guaranteed to be replaced (longer than max_match), but no byte
	// may be lost or repeated: either all of it or a replaced tail.
	if got != in && !strings.HasSuffix(got, "T") {
		t.Fatalf("got %q", got)
	}
	if !strings.HasPrefix(got, "<"+strings.Repeat("x", 80)) {
		t.Fatalf("got %q, want the start of the input unchanged", got)
	}
}

func FuzzLiteralChunking(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nServer: nginx\r\n"), []byte("Server: nginx"), []byte("Server: ferry"), uint64(7))
	f.Add([]byte("aaaaab"), []byte("aab"), []byte("b"), uint64(1))
	f.Add([]byte("banana"), []byte("a"), []byte("aa"), uint64(3))
	f.Fuzz(func(t *testing.T, in, find, repl []byte, seed uint64) {
		if len(find) == 0 || len(find) > 64 || len(in) > 4096 {
			return
		}
		st := newTestStream(t, 0, Rule{Find: string(find), Replace: string(repl)})
		chunks := randomSplit(rand.New(rand.NewPCG(seed, 0)), in)
		want := bytes.ReplaceAll(in, find, repl)
		if got := runChunks(t, st, len(find)-1, chunks); got != string(want) {
			t.Fatalf("reads %q: got %q, want %q", chunks, got, want)
		}
	})
}

func FuzzRegexpChunking(f *testing.F) {
	f.Add([]byte("User-Agent: curl\r\nHost: x\r\n"), `User-Agent: [^\r\n]*`, uint64(1))
	f.Add([]byte("foobar foo"), `foo|foobar`, uint64(2))
	f.Add([]byte("caf\xc3\xa9\xc3"), `[^a-z]+`, uint64(3))
	f.Fuzz(func(t *testing.T, in []byte, expr string, seed uint64) {
		if len(in) > 1024 || len(expr) > 64 {
			return
		}
		re, live, err := compileRegexp(expr, 4096, true)
		if err != nil || len(live.prog.Inst) > 300 {
			return // huge programs are merely slow
		}
		// Input shorter than max_match: every match is found.
		st := newTestStream(t, 4096, Rule{Regexp: expr, Replace: "<$0>"})
		chunks := randomSplit(rand.New(rand.NewPCG(seed, 0)), in)
		want := re.ReplaceAll(in, []byte("<$0>"))
		if got := runChunks(t, st, 4095, chunks); got != string(want) {
			t.Fatalf("%q, reads %q: got %q, want %q", expr, chunks, got, want)
		}
	})
}

// BenchmarkPush measures 32KiB reads of text with a match now and then.
func BenchmarkPush(b *testing.B) {
	text := bytes.Repeat([]byte("GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nServer: nginx\r\n\r\n"), 400)[:32<<10]
	for _, bm := range []struct {
		name string
		rule Rule
	}{
		{"literal", Rule{Find: "Server: nginx", Replace: "Server: ferry"}},
		{"regexp", Rule{Regexp: `User-Agent: [^\r\n]*`, Replace: "User-Agent: ferry"}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			st := newTestStream(b, 0, bm.rule)
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				st.push(text, false)
			}
		})
	}
}
