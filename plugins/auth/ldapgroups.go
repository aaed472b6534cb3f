package auth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
)

// groupLookup finds a user's groups in the directory: from an attribute
// of the user's entry, or by a search of group entries; neither when
// both are empty.
type groupLookup struct {
	attribute string // the user's attribute listing the groups (memberOf)

	base, filter, name string // the group search and the naming attribute
}

// groupsFromConfig checks the group settings.
func groupsFromConfig(c LDAPConfig) (groupLookup, error) {
	g := groupLookup{attribute: c.GroupAttribute, base: c.GroupSearchBase, filter: c.GroupSearchFilter, name: c.GroupNameAttribute}
	switch {
	case g.attribute != "" && g.base != "":
		return g, plugins.Errorf("group_attribute", "give group_attribute or group_search_base, not both")
	case g.attribute != "":
		return g, plugins.KeyErr("group_attribute", checkAttribute(g.attribute))
	case g.base == "":
		if g.filter != "" {
			return g, plugins.Errorf("group_search_filter", "only applies with group_search_base")
		}
		if g.name != "" {
			return g, plugins.Errorf("group_name_attribute", "only applies with group_search_base")
		}
		return g, nil
	}
	if g.filter == "" {
		g.filter = defaultGroupSearchFilter
	}
	if g.name == "" {
		g.name = defaultGroupName
	}
	return g, errors.Join(plugins.KeyErr("group_search_base", checkDN(g.base)),
		plugins.KeyErr("group_search_filter", checkFilter(g.filter, "{dn}", "{user}")),
		plugins.KeyErr("group_name_attribute", checkAttribute(g.name)))
}

// of gives the groups of the user bound as dn on c. entry is the user's
// entry, with the group attribute. The group search runs as the service
// account when there is one, else as the user.
func (g groupLookup) of(c *ldapConn, service *ldap.SimpleBindRequest, dn, user string, entry *ldap.Entry) ([]string, error) {
	if g.attribute == "" && g.base == "" {
		return nil, nil
	}
	if g.attribute != "" {
		return groupNames(entry.GetEqualFoldAttributeValues(g.attribute))
	}
	if service != nil {
		if err := c.bind(service, true); err != nil {
			return nil, fmt.Errorf("bind as the service account: %w", err)
		}
	}
	r := strings.NewReplacer("{dn}", ldap.EscapeFilter(dn), "{user}", ldap.EscapeFilter(user))
	res, err := c.search(ldap.NewSearchRequest(g.base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		maxUserGroups+1, 0, false, r.Replace(g.filter), []string{g.name}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || err == nil && len(res.Entries) > maxUserGroups {
		return nil, fmt.Errorf("search the user's groups: more than %d", maxUserGroups)
	}
	if err != nil {
		return nil, fmt.Errorf("search the user's groups: %w", err)
	}
	var names []string
	for _, e := range res.Entries {
		names = append(names, e.GetEqualFoldAttributeValue(g.name))
	}
	return groupNames(names)
}

// groupNames turns attribute values into group names (groupName) and
// drops those that are not valid group names (empty, with whitespace or
// control characters, over 255 bytes): no rule can name them, so they
// decide nothing. More than maxUserGroups is an error: cutting the list
// could drop a group that an acl denies.
func groupNames(values []string) ([]string, error) {
	if len(values) > maxUserGroups {
		return nil, fmt.Errorf("the user is in more than %d groups", maxUserGroups)
	}
	var out []string
	for _, v := range values {
		if name := groupName(v); match.CheckGroup(name) == nil {
			out = append(out, name)
		}
	}
	return out, nil
}

// groupName is the value of the first RDN of a DN (cn=admins,ou=groups,
// dc=example,dc=org -> admins), or v whole when it is not a DN.
func groupName(v string) string {
	if !strings.Contains(v, "=") {
		return v
	}
	dn, err := ldap.ParseDN(v)
	if err != nil || len(dn.RDNs) == 0 || len(dn.RDNs[0].Attributes) == 0 {
		return v
	}
	return dn.RDNs[0].Attributes[0].Value
}

// checkDN checks a DN of the config.
func checkDN(dn string) error {
	if _, err := ldap.ParseDN(dn); err != nil {
		return fmt.Errorf("invalid DN %q: %v", dn, err)
	}
	return nil
}

// checkTemplateDN checks a DN with {user}.
func checkTemplateDN(dn string) error {
	if !strings.Contains(dn, "{user}") {
		return fmt.Errorf("%q has no {user}", dn)
	}
	return checkDN(strings.ReplaceAll(dn, "{user}", "x"))
}

// checkFilter checks a search filter (RFC 4515) that holds one of the
// placeholders.
func checkFilter(f string, placeholders ...string) error {
	used := false
	sample := f
	for _, p := range placeholders {
		used = used || strings.Contains(f, p)
		sample = strings.ReplaceAll(sample, p, "x")
	}
	if !used {
		return fmt.Errorf("%q has no %s", f, strings.Join(placeholders, " or "))
	}
	if _, err := ldap.CompileFilter(sample); err != nil {
		return fmt.Errorf("invalid filter %q: %v", f, err)
	}
	return nil
}

// checkAttribute checks an attribute description: a name or an OID
// (RFC 4512 1.4), with options.
func checkAttribute(a string) error {
	if a == "" || len(a) > 128 || strings.ContainsFunc(a, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == ';')
	}) {
		return fmt.Errorf("invalid attribute name %q", a)
	}
	return nil
}
