package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/safefile"
)

// LDAPConfig are the settings of backend = "ldap": ferry binds to the
// directory as the user (RFC 4513 simple bind), over TLS. The directory's
// address (url) and CA (ca_file) are HTTPConfig's keys, shared.
type LDAPConfig struct {
	// StartTLS upgrades an ldap:// connection with StartTLS (RFC 4511
	// 4.14) before anything is sent; not with ldaps://.
	StartTLS bool `toml:"start_tls"`
	// BindDN is the user's DN with {user} for the name the client gave,
	// escaped per RFC 4514: "uid={user},ou=people,dc=example,dc=org".
	// Either BindDN, or SearchBase (search-then-bind).
	BindDN string `toml:"bind_dn"`
	// SearchBase is where the user's entry is searched (whole subtree)
	// with SearchFilter, as the service account; the one entry found is
	// bound as.
	SearchBase string `toml:"search_base"`
	// SearchFilter finds the user's entry, with {user} escaped per RFC
	// 4515. Default "(uid={user})".
	SearchFilter string `toml:"search_filter"`
	// BindUser is the service account's DN; required with SearchBase.
	// With BindDN it is optional, and the group lookups use it instead of
	// the user's own bind.
	BindUser string `toml:"bind_user"`
	// BindPassword is the service account's password; or
	// BindPasswordFile, a file holding it (relative to the config file's
	// directory; a final newline is dropped).
	BindPassword     string `toml:"bind_password"`
	BindPasswordFile string `toml:"bind_password_file"`
	// GroupAttribute names an attribute of the user's entry that lists
	// the user's groups, as memberOf does. A value that is a DN gives the
	// value of its first RDN (cn=admins,ou=groups,... -> admins); any
	// other value is the group's name whole.
	GroupAttribute string `toml:"group_attribute"`
	// GroupSearchBase is where the user's groups are searched (whole
	// subtree) with GroupSearchFilter; not with GroupAttribute.
	GroupSearchBase string `toml:"group_search_base"`
	// GroupSearchFilter finds the user's groups, with {dn} (the user's
	// DN) and {user} escaped per RFC 4515. Default "(member={dn})".
	GroupSearchFilter string `toml:"group_search_filter"`
	// GroupNameAttribute is the attribute of a group entry that names the
	// group. Default "cn".
	GroupNameAttribute string `toml:"group_name_attribute"`
}

// Defaults and bounds of the LDAP settings.
const (
	maxPasswordFile = 4096

	defaultSearchFilter      = "(uid={user})"
	defaultGroupSearchFilter = "(member={dn})"
	defaultGroupName         = "cn"
)

// setKeys are the keys of c that are set, in the order of the table.
func (c LDAPConfig) setKeys() []string {
	var keys []string
	for _, kv := range []struct {
		key string
		set bool
	}{
		{"start_tls", c.StartTLS}, {"bind_dn", c.BindDN != ""}, {"search_base", c.SearchBase != ""},
		{"search_filter", c.SearchFilter != ""}, {"bind_user", c.BindUser != ""},
		{"bind_password", c.BindPassword != ""}, {"bind_password_file", c.BindPasswordFile != ""},
		{"group_attribute", c.GroupAttribute != ""}, {"group_search_base", c.GroupSearchBase != ""},
		{"group_search_filter", c.GroupSearchFilter != ""}, {"group_name_attribute", c.GroupNameAttribute != ""},
	} {
		if kv.set {
			keys = append(keys, kv.key)
		}
	}
	return keys
}

// notLDAP reports every LDAP key set in cfg, for a backend other than
// "ldap".
func notLDAP(cfg Config) error {
	var errs []error
	for _, k := range cfg.LDAPConfig.setKeys() {
		errs = append(errs, plugins.Errorf(k, "only applies with backend = \"ldap\""))
	}
	return errors.Join(errs...)
}

// ldapChecker logs in by binding to the directory as the user.
type ldapChecker struct {
	pool *ldapPool
	log  zerolog.Logger // sampled: a directory problem must not flood it

	bindDN       string // template with {user}; "" with search-then-bind
	searchBase   string
	searchFilter string
	service      *ldap.SimpleBindRequest // the service account; nil: none
	dummyDN      string                  // bound as when no user is found
	groups       groupLookup
	// nameAttrs are the attributes whose whole value the template or
	// the filter gives as {user}: the name must be one of their values
	// exactly (exactName).
	nameAttrs []string
}

// newLDAP builds an instance with backend = "ldap".
func newLDAP(env plugins.Env, cfg Config) (plugins.Plugin, error) {
	l, errs := ldapFromConfig(env, cfg)
	pool, err := newLDAPPool(env, cfg)
	errs = append(errs, err)
	// The directory answers yes or no and groups: [[route]] tables
	// choose by group what the http backend's answers choose.
	if len(cfg.Upstreams) > 0 {
		errs = append(errs, plugins.Errorf("upstreams", "only applies with backend = \"http\": the directory chooses no upstream"))
	}
	if len(cfg.SourceAddresses) > 0 {
		errs = append(errs, plugins.Errorf("source_addresses", "only applies with backend = \"http\": the directory chooses no source address"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	l.pool = pool
	l.log = env.Log.Sample(&zerolog.BurstSampler{Burst: 1, Period: time.Minute})
	r, err := newRemote(cfg, "ldap", l)
	if err != nil {
		return nil, err
	}
	pool.timeout = r.timeout
	pool.setSize(cap(r.slots))
	r.stop = pool.close
	return newRemotePlugin(env, cfg, r)
}

// ldapFromConfig checks how the user's DN and groups are found, and
// returns every problem.
func ldapFromConfig(env plugins.Env, cfg Config) (*ldapChecker, []error) {
	c := cfg.LDAPConfig
	l := &ldapChecker{bindDN: c.BindDN, searchBase: c.SearchBase, searchFilter: c.SearchFilter}
	var errs []error
	switch {
	case c.BindDN != "" && c.SearchBase != "":
		errs = append(errs, plugins.Errorf("bind_dn", "give bind_dn or search_base, not both"))
	case c.BindDN != "":
		errs = append(errs, plugins.KeyErr("bind_dn", checkTemplateDN(c.BindDN)))
		if c.SearchFilter != "" {
			errs = append(errs, plugins.Errorf("search_filter", "only applies with search_base"))
		}
	case c.SearchBase != "":
		if l.searchFilter == "" {
			l.searchFilter = defaultSearchFilter
		}
		errs = append(errs, plugins.KeyErr("search_base", checkDN(c.SearchBase)),
			plugins.KeyErr("search_filter", checkFilter(l.searchFilter, "{user}")))
		if c.BindUser == "" {
			errs = append(errs, plugins.Errorf("bind_user", "required with search_base: the service account that searches"))
		}
	default:
		errs = append(errs, plugins.Errorf("bind_dn", "set bind_dn (a DN with {user}), or search_base to search the user's entry"))
	}
	service, err := serviceAccount(env, c)
	l.service = service
	errs = append(errs, err)
	l.groups, err = groupsFromConfig(c)
	errs = append(errs, err)
	if c.SearchBase != "" {
		l.dummyDN = "cn=ferry-no-such-user-" + randomHex() + "," + c.SearchBase
	}
	l.nameAttrs = nameAttrs(c.BindDN + l.searchFilter)
	return l, errs
}

// serviceAccount reads bind_user and its password.
func serviceAccount(env plugins.Env, c LDAPConfig) (*ldap.SimpleBindRequest, error) {
	pw := c.BindPassword
	switch {
	case c.BindUser == "":
		if c.BindPassword != "" || c.BindPasswordFile != "" {
			return nil, plugins.Errorf("bind_password", "only applies with bind_user")
		}
		return nil, nil
	case c.BindPassword != "" && c.BindPasswordFile != "":
		return nil, plugins.Errorf("bind_password_file", "give bind_password or bind_password_file, not both")
	case c.BindPasswordFile != "":
		data, err := safefile.ReadFile(env.Path(c.BindPasswordFile), maxPasswordFile)
		if err != nil {
			return nil, plugins.KeyErr("bind_password_file", err)
		}
		pw = strings.TrimRight(string(data), "\r\n")
	}
	if err := checkDN(c.BindUser); err != nil {
		return nil, plugins.KeyErr("bind_user", err)
	}
	if pw == "" {
		// An empty password would make the bind unauthenticated, which
		// succeeds without checking anything (RFC 4513 5.1.2).
		return nil, plugins.Errorf("bind_password", "required with bind_user, and not empty")
	}
	return ldap.NewSimpleBindRequest(c.BindUser, pw, nil), nil
}

// wholeUser finds "attr={user}" as a whole RDN value (after "," "+" or
// at the start, before "," "+" or the end) or a whole equality assertion
// ("(attr={user})").
var wholeUser = regexp.MustCompile(`(?:^|[,+(])\s*([A-Za-z][A-Za-z0-9-]*|[0-9][0-9.]*)\s*=\{user\}(?:$|[,+)])`)

// nameAttrs are the attributes that s (a template or a filter) asserts
// to be {user} whole.
func nameAttrs(s string) []string {
	var out []string
	for _, m := range wholeUser.FindAllStringSubmatch(s, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

// randomHex is 16 random hex digits: the dummy DN cannot be guessed, so
// no entry can be made to match it.
func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Denials and backend errors of one login. On the user's own bind,
// invalidCredentials (49), noSuchObject (32) and invalidDNSyntax (34)
// are about the name and password the client gave: a denial. Every
// other failure (the network, a timeout, busy (51), unavailable (52),
// the service account's bind, a search) is the directory's: a backend
// error, which on_backend_error decides.
var userBindDenials = []uint16{ldap.LDAPResultInvalidCredentials, ldap.LDAPResultNoSuchObject, ldap.LDAPResultInvalidDNSyntax}

var deny = result{allow: false}

// check implements checker: find the user's DN, bind as it, read the
// groups.
func (l *ldapChecker) check(ctx context.Context, req request) (result, error) {
	if req.Password == "" || req.User == "" {
		// A simple bind with an empty password is an unauthenticated
		// bind, which succeeds (RFC 4513 5.1.2): refuse before any.
		return deny, nil
	}
	return l.pool.run(ctx, func(c *ldapConn) (result, error) { return l.login(c, req.User, req.Password) })
}

// login binds as the user on c. An unknown user (no entry, or several)
// is bound as the dummy DN all the same, so that it costs what a wrong
// password costs: a search and a bind.
func (l *ldapChecker) login(c *ldapConn, user, password string) (result, error) {
	dn, entry, err := l.findUser(c, user)
	if err != nil {
		return result{}, err
	}
	found := dn != ""
	if !found {
		dn = l.dummyDN
	}
	err = c.bind(ldap.NewSimpleBindRequest(dn, password, nil), false)
	switch {
	case err != nil && ldap.IsErrorAnyOf(err, userBindDenials...):
		return deny, nil
	case err != nil:
		return result{}, fmt.Errorf("bind as the user: %w", err)
	case !found:
		return deny, nil // the directory took the dummy DN: refuse still
	}
	if entry == nil { // a DN template: read the entry now
		if entry, err = l.readEntry(c, dn); err != nil {
			return result{}, err
		}
		if !exactName(entry, l.nameAttrs, user) {
			return deny, nil
		}
	}
	groups, err := l.groups.of(c, l.service, dn, user, entry)
	if err != nil {
		return result{}, err
	}
	return result{allow: true, groups: groups}, nil
}

// attrs are the attributes to read of the user's entry: the names and
// the group attribute; "1.1" for none (RFC 4511 4.5.1.8).
func (l *ldapChecker) attrs() []string {
	a := slices.Clone(l.nameAttrs)
	if l.groups.attribute != "" {
		a = append(a, l.groups.attribute)
	}
	if len(a) == 0 {
		return []string{"1.1"}
	}
	return a
}

// readEntry reads the user's entry at dn, as the service account if
// there is one, else as the user.
func (l *ldapChecker) readEntry(c *ldapConn, dn string) (*ldap.Entry, error) {
	if len(l.nameAttrs) == 0 && l.groups.attribute == "" {
		return &ldap.Entry{DN: dn}, nil // nothing to read
	}
	if l.service != nil {
		if err := c.bind(l.service, true); err != nil {
			return nil, fmt.Errorf("bind as the service account: %w", err)
		}
	}
	res, err := c.search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", l.attrs(), nil))
	if err != nil {
		return nil, fmt.Errorf("read the user's entry: %w", err)
	}
	if len(res.Entries) != 1 {
		return nil, fmt.Errorf("read the user's entry: %d entries", len(res.Entries))
	}
	return res.Entries[0], nil
}

// findUser gives the user's DN from the template, or searches it as the
// service account; "" when no one entry matches exactly (exactName).
// With search-then-bind the entry carries the names and the group
// attribute; with a template it is nil.
func (l *ldapChecker) findUser(c *ldapConn, user string) (string, *ldap.Entry, error) {
	if l.bindDN != "" {
		return strings.ReplaceAll(l.bindDN, "{user}", ldap.EscapeDN(user)), nil, nil
	}
	if err := c.bind(l.service, true); err != nil {
		return "", nil, fmt.Errorf("bind as the service account: %w", err)
	}
	filter := strings.ReplaceAll(l.searchFilter, "{user}", ldap.EscapeFilter(user))
	res, err := c.search(ldap.NewSearchRequest(l.searchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, 0, false, filter, l.attrs(), nil))
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || err == nil && len(res.Entries) > 1:
		l.log.Warn().Str("user", clip(user)).Str("filter", clip(filter)).
			Msg("ldap: the user search found several entries: login refused")
		return "", nil, nil
	case err != nil:
		return "", nil, fmt.Errorf("search the user: %w", err)
	case len(res.Entries) == 0 || !exactName(res.Entries[0], l.nameAttrs, user):
		return "", nil, nil
	}
	return res.Entries[0].DN, res.Entries[0], nil
}

// exactName reports whether one of the entry's values of attrs is user,
// byte for byte. Directories compare uid and mail without case and
// insignificant spaces, so "ALICE" or "alice " would bind as alice; the
// session's user is the name as given, which an acl rule for user alice
// would not match. With no attrs (the placeholder is not a whole value)
// every name passes.
func exactName(e *ldap.Entry, attrs []string, user string) bool {
	for _, a := range attrs {
		if slices.Contains(e.GetEqualFoldAttributeValues(a), user) {
			return true
		}
	}
	return len(attrs) == 0
}
