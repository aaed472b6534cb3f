package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"ferry/plugins"

	"golang.org/x/crypto/bcrypt"
)

// plainPrefix marks an inline password stored as plain text.
const plainPrefix = "plain:"

// entry is one user's secret: a bcrypt hash, or for an inline "plain:"
// user the SHA-256 of the password (hashed so that comparing it takes the
// same time whatever the length of the guess).
type entry struct {
	hash  []byte // bcrypt hash; nil for a plain user
	plain []byte // SHA-256 of the plain password; nil for a bcrypt user
	from  string // where it is defined: "users.alice" or "FILE:LINE"
}

// table is one generation of users. It is never changed once published:
// a reload builds and swaps in a new one.
type table struct {
	users map[string]entry
	// dummy is a bcrypt hash of a random password, at the highest cost
	// among the users' hashes, that unknown users and wrong plain passwords
	// are checked against so that every refusal costs about one bcrypt
	// check. A wrong password for a user with a cheaper hash is padded
	// (asleep) to the dummy's time.
	dummy     []byte
	dummyCost int
	// groups are each user's groups, sorted; sessions share the slices.
	groups groupSet
}

// parseInline checks the users table of the config. Errors name the key,
// "users.alice: ...", and never repeat the value: it may be a password.
func parseInline(users map[string]string) (map[string]entry, error) {
	out := make(map[string]entry, len(users))
	for _, name := range slices.Sorted(maps.Keys(users)) {
		key := "users." + keySegment(name)
		if err := checkName(name); err != nil {
			return nil, plugins.KeyErr(key, err)
		}
		v := users[name]
		if pw, ok := strings.CutPrefix(v, plainPrefix); ok {
			if pw == "" {
				return nil, plugins.Errorf(key, "empty password after %q", plainPrefix)
			}
			sum := sha256.Sum256([]byte(pw))
			out[name] = entry{plain: sum[:], from: key}
			continue
		}
		if err := checkHash(v); err != nil {
			if errors.Is(err, errUnknownHash) {
				return nil, plugins.Errorf(key, "want a bcrypt hash (\"$2y$10$...\", from htpasswd -nB %s) or \"plain:PASSWORD\"", name)
			}
			return nil, plugins.KeyErr(key, err)
		}
		out[name] = entry{hash: []byte(v), from: key}
	}
	return out, nil
}

// parseHtpasswd reads the lines "user:hash" of an htpasswd file, where
// hash is bcrypt. Blank lines and lines starting with # are skipped; a
// third field (user:hash:comment, as nginx allows) is ignored. Errors
// read "FILE:LINE: ..." and never repeat a hash.
func parseHtpasswd(file string, data []byte) (map[string]entry, error) {
	out := make(map[string]entry)
	lines := make(map[string]int) // user -> line number
	for i, line := range strings.Split(string(data), "\n") {
		where := file + ":" + strconv.Itoa(i+1)
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s: want user:hash", where)
		}
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		hash, _, _ := strings.Cut(rest, ":")
		if first, dup := lines[name]; dup {
			return nil, fmt.Errorf("%s: user %s: already on line %d", where, name, first)
		}
		if err := checkHash(hash); err != nil {
			if errors.Is(err, errUnknownHash) {
				err = errors.New("not a bcrypt hash ($2y$, $2a$ or $2b$): make one with htpasswd -B")
			}
			return nil, fmt.Errorf("%s: user %s: %w", where, name, err)
		}
		out[name] = entry{hash: []byte(hash), from: where}
		lines[name] = i + 1
	}
	return out, nil
}

// merge joins the inline users and the file's; a user in both is an
// error, since either choice would surprise someone.
func merge(inline, file map[string]entry) (map[string]entry, error) {
	out := maps.Clone(inline)
	if out == nil {
		out = make(map[string]entry, len(file))
	}
	for _, name := range slices.Sorted(maps.Keys(file)) {
		e := file[name]
		if in, dup := inline[name]; dup {
			return nil, fmt.Errorf("%s: user %s: also defined in %s", e.from, name, in.from)
		}
		out[name] = e
	}
	return out, nil
}

// checkName rejects user names no client could send: HTTP Basic splits
// user from password at the first colon, and SOCKS5 (RFC 1929) carries at
// most 255 bytes.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty user name")
	case strings.Contains(name, ":"):
		return errors.New("user name contains ':' (HTTP Basic could not send it)")
	case len(name) > 255:
		return errors.New("user name longer than 255 bytes (SOCKS5 could not send it)")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("user name contains a control character")
	}
	return nil
}

// errUnknownHash is checkHash's answer for a value that is no hash it
// knows: callers say what they expected instead.
var errUnknownHash = errors.New("unknown hash")

// checkHash accepts the bcrypt hashes that htpasswd -B and common tools
// make: "$2y$", "$2a$" or "$2b$", 60 characters.
func checkHash(h string) error {
	switch {
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		if len(h) != 60 {
			return fmt.Errorf("malformed bcrypt hash: %d characters, want 60", len(h))
		}
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return fmt.Errorf("malformed bcrypt hash: %w", err)
		}
		return nil
	}
	if kind := hashKind(h); kind != "" {
		return fmt.Errorf("%s hashes are not supported: use bcrypt (htpasswd -B)", kind)
	}
	return errUnknownHash
}

// hashKind names the other password hash formats found in htpasswd
// files, for error messages; "" when h looks like none of them.
func hashKind(h string) string {
	for _, k := range []struct{ prefix, name string }{
		{"$2x$", "bcrypt $2x$ (the buggy variant)"},
		{"$apr1$", "MD5 ($apr1$)"},
		{"$1$", "MD5-crypt ($1$)"},
		{"$5$", "SHA-256-crypt ($5$)"},
		{"$6$", "SHA-512-crypt ($6$)"},
		{"$y$", "yescrypt ($y$)"},
		{"$argon2", "Argon2"},
		{"{SHA}", "SHA-1 ({SHA})"},
		{"{SSHA}", "salted SHA-1 ({SSHA})"},
	} {
		if strings.HasPrefix(h, k.prefix) {
			return k.name
		}
	}
	if len(h) == 13 && !strings.ContainsFunc(h, func(r rune) bool {
		return !(r == '.' || r == '/' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	}) {
		return "crypt(3) DES"
	}
	return ""
}

// keySegment writes a user name as a segment of a plugins.KeyError key:
// bare when it can be, else quoted.
func keySegment(name string) string {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool {
		return !(r == '_' || r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	}) {
		return strconv.Quote(name)
	}
	return name
}

// maxCost is the highest bcrypt cost among the users' hashes, or
// bcrypt.MinCost when no user has a bcrypt hash: then every refusal runs
// the same dummy check and any cost hides which users exist. The highest,
// not the most common: an unknown user then takes as long as the slowest
// known one, and the faster refusals of cheaper hashes are padded, so no
// cost class stands out.
func maxCost(users map[string]entry) int {
	best := bcrypt.MinCost
	for _, e := range users {
		if e.hash != nil {
			c, _ := bcrypt.Cost(e.hash) // checked when parsed
			best = max(best, c)
		}
	}
	return best
}

// dummyHash makes a bcrypt hash of a random password at cost.
func dummyHash(cost int) ([]byte, error) {
	var b [18]byte
	rand.Read(b[:])
	return bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(b[:])), cost)
}
