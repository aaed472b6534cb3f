// Package match decides whether a proxy request matches a rule: its
// destination name (exact, "*.sub" wildcards, ".domain" with subdomains,
// or a set loaded from a file of a million names), destination address
// (CIDRs, IPv4 and IPv6), destination port (ports and ranges), client
// address, user, the user's groups and listener. The acl plugin builds its allow/deny rules
// from it, and [[route]] match lists are meant to.
//
//	r, err := match.Compile(match.Spec{
//		Domain: []string{"*.corp.example"},
//		Port:   []string{"443", "8000-8999"},
//	})
//	if err != nil { ... } // "port[1]: invalid port range ..."
//	switch r.Eval(match.Query{Host: "git.corp.example", Port: 443}) {
//	case match.Yes:    // matches
//	case match.No:     // does not
//	case match.NeedIP: // depends on the address the name resolves to:
//		// ask again with Query.IP set, once per resolved address
//	}
//
// A rule is the AND of the conditions it sets, each the OR of its
// entries; a rule that sets nothing matches every request. Names compare
// case-insensitively with a trailing dot ignored; user and listener names
// compare exactly. Private and PrivateRange tell loopback, private,
// link-local and other non-public addresses.
//
// The package does not resolve names: a condition on destination
// addresses is decided on Query.IP (or on Host when it is an IP literal),
// and a caller that has a name learns that it must resolve it first
// (NeedIP, Rule.NeedsIP). It does not handle IDNA (write xn-- names), does
// not watch files for changes, and has no notion of allow or deny.
package match

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Query is what a rule is matched against: one proxy request.
type Query struct {
	// Host is the destination host as the client named it: a name or an
	// IP literal (without brackets).
	Host string
	// IP is the destination address: the resolved one when Host is a
	// name; the zero Addr when not resolved yet. When Host is an IP
	// literal and IP is zero, the literal is used.
	IP netip.Addr
	// Port is the destination port.
	Port uint16
	// Client is the client's address (the zero Addr when unknown).
	Client netip.Addr
	// User is the authenticated user name, empty when none.
	User string
	// Groups are the authenticated user's groups.
	Groups []string
	// Listener is the name of the listener that accepted the client.
	Listener string
}

// Result is the outcome of Rule.Eval.
type Result uint8

const (
	// No: the request does not match.
	No Result = iota
	// Yes: the request matches.
	Yes
	// NeedIP: every condition but one on the destination address matches,
	// and the destination is a name not resolved yet. Evaluate again with
	// Query.IP set to each address the name resolves to.
	NeedIP
)

func (r Result) String() string {
	switch r {
	case No:
		return "no"
	case Yes:
		return "yes"
	case NeedIP:
		return "need ip"
	}
	return fmt.Sprintf("result(%d)", uint8(r))
}

// Rule is a compiled set of conditions; a request matches when it meets
// every condition set (nil or empty fields are not conditions). Build one
// with Compile from config strings, or fill the fields from values already
// parsed (Domain, Prefix and PortRange decode from config text). A Rule
// must not be changed once in use; Eval is safe for concurrent use.
type Rule struct {
	// Client: the client's address is in the set.
	Client *Prefixes
	// User: the authenticated user is one of these (exact match). A request
	// without a user does not match.
	User []string
	// Group: the authenticated user is in one of these groups (exact
	// match). A request without a user does not match.
	Group []Group
	// Listener: the request came through one of these listeners.
	Listener []string
	// Port: the destination port is in one of the ranges.
	Port Ports
	// Domain: the destination is a name in the set. An IP literal
	// destination never matches. A non-nil empty set matches nothing.
	Domain *Domains
	// Dest: the destination address is in the set: the IP literal, or the
	// address a name resolves to (see NeedIP).
	Dest *Prefixes
	// AnyTarget makes Domain and Dest alternatives: the destination
	// matches when its name is in Domain or its address is in Dest, the
	// way a [[route]] match list reads. By default it must meet both.
	AnyTarget bool
}

// NeedsIP reports whether the rule has a condition on the destination
// address, so that a name destination may be decided only after
// resolution.
func (r *Rule) NeedsIP() bool { return r.Dest != nil }

// Match reports whether q matches: Eval(q) == Yes. A rule that needs the
// resolved address of an unresolved name does not match.
func (r *Rule) Match(q Query) bool { return r.Eval(q) == Yes }

// Eval matches q against the rule. Conditions that do not need the
// destination address are checked first, so NeedIP means that the
// address alone decides.
func (r *Rule) Eval(q Query) Result {
	if len(r.Listener) > 0 && !slices.Contains(r.Listener, q.Listener) {
		return No
	}
	if len(r.User) > 0 && (q.User == "" || !slices.Contains(r.User, q.User)) {
		return No
	}
	if len(r.Group) > 0 && (q.User == "" || !inGroups(r.Group, q.Groups)) {
		return No
	}
	if r.Client != nil && !r.Client.Contains(q.Client) {
		return No
	}
	if len(r.Port) > 0 && !r.Port.Contains(q.Port) {
		return No
	}
	if r.Domain == nil && r.Dest == nil {
		return Yes
	}
	hostIP, literal := ParseLiteral(q.Host)
	isName := !literal && q.Host != ""
	addr := q.IP
	if !addr.IsValid() && !isName {
		addr = hostIP // the zero Addr when Host is empty
	}
	nameOK := r.Domain != nil && isName && r.Domain.Match(q.Host)
	if r.Dest == nil {
		return yesNo(nameOK)
	}
	if r.AnyTarget && nameOK {
		return Yes
	}
	if !r.AnyTarget && r.Domain != nil && !nameOK {
		return No
	}
	if !addr.IsValid() {
		return NeedIP
	}
	return yesNo(r.Dest.Contains(addr))
}

func yesNo(b bool) Result {
	if b {
		return Yes
	}
	return No
}

// Spec is a rule as a config file writes it: lists of strings. Compile
// turns it into a Rule.
type Spec struct {
	// Client lists client CIDRs or addresses.
	Client []string
	// User lists user names.
	User []string
	// Listener lists listener names.
	Listener []string
	// Domain lists name patterns: "example.com", "*.example.com",
	// ".example.com".
	Domain []string
	// DomainFile lists files of name patterns (see Domains.Load), added to
	// Domain's.
	DomainFile []string
	// Dest lists destination CIDRs or addresses.
	Dest []string
	// Port lists ports and ranges: "443", "8000-8999".
	Port []string
	// Target lists names, patterns, addresses and CIDRs together, any of
	// which matches (a [[route]] match list). It cannot be combined with
	// Domain, DomainFile or Dest.
	Target []string
}

// EntryError is a bad entry of a Spec list.
type EntryError struct {
	// Key is the list: "client", "domain", "domain_file", "dest", "port",
	// "target".
	Key string
	// Index is the entry's position in the list, from 0.
	Index int
	Err   error
}

func (e *EntryError) Error() string { return fmt.Sprintf("%s[%d]: %v", e.Key, e.Index, e.Err) }

func (e *EntryError) Unwrap() error { return e.Err }

// Compile builds a Rule from s. Every bad entry is reported, each as an
// *EntryError naming its list and position ("dest[2]: invalid CIDR ..."),
// joined with errors.Join.
func Compile(s Spec) (*Rule, error) {
	var errs entryErrors
	r := &Rule{User: s.User, Listener: s.Listener}
	r.Client = compilePrefixes("client", s.Client, &errs)
	r.Dest = compilePrefixes("dest", s.Dest, &errs)
	r.Port = compilePorts(s.Port, &errs)
	r.Domain = compileDomains(s.Domain, s.DomainFile, &errs)
	if len(s.Target) > 0 {
		if len(s.Domain) > 0 || len(s.DomainFile) > 0 || len(s.Dest) > 0 {
			return nil, errors.New("target: cannot be combined with domain, domain_file or dest")
		}
		r.AnyTarget = true
		r.compileTarget(s.Target, &errs)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// entryErrors collects the bad entries of a Spec, so that Compile goes on
// past the first and reports them all.
type entryErrors []error

// add records that entry i of the list key is bad.
func (e *entryErrors) add(key string, i int, err error) {
	*e = append(*e, &EntryError{Key: key, Index: i, Err: err})
}

// compilePrefixes parses the addresses and CIDRs of the list key; nil
// when the list is empty.
func compilePrefixes(key string, list []string, errs *entryErrors) *Prefixes {
	if len(list) == 0 {
		return nil
	}
	ps := make([]netip.Prefix, 0, len(list))
	for i, e := range list {
		p, err := ParsePrefix(e)
		if err != nil {
			errs.add(key, i, err)
			continue
		}
		ps = append(ps, p)
	}
	return NewPrefixes(ps...)
}

// compilePorts parses the port list.
func compilePorts(list []string, errs *entryErrors) Ports {
	var out Ports
	for i, e := range list {
		p, err := ParsePortRange(e)
		if err != nil {
			errs.add("port", i, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// compileDomains parses the domain list and loads the domain files into
// one set; nil when both are empty.
func compileDomains(domains, files []string, errs *entryErrors) *Domains {
	if len(domains) == 0 && len(files) == 0 {
		return nil
	}
	out := new(Domains)
	for i, e := range domains {
		d, err := ParseDomain(e)
		if err != nil {
			errs.add("domain", i, err)
			continue
		}
		out.Add(d)
	}
	for i, path := range files {
		if _, err := out.LoadFile(path); err != nil {
			errs.add("domain_file", i, err)
		}
	}
	return out
}

// compileTarget sorts the target list, which mixes names and addresses,
// into r.Domain and r.Dest. An entry with a slash was meant as a CIDR and
// is reported as one; anything else that is no address is parsed as a
// name.
func (r *Rule) compileTarget(list []string, errs *entryErrors) {
	var ps []netip.Prefix
	for i, e := range list {
		p, err := ParsePrefix(e)
		if err == nil {
			ps = append(ps, p)
			continue
		}
		if strings.Contains(e, "/") {
			errs.add("target", i, err) // meant as a CIDR: say what is wrong with it
			continue
		}
		d, err := ParseDomain(e)
		if err != nil {
			errs.add("target", i, fmt.Errorf("invalid destination %q: want a name, *.name, .name, an IP address or a CIDR", e))
			continue
		}
		if r.Domain == nil {
			r.Domain = new(Domains)
		}
		r.Domain.Add(d)
	}
	if len(ps) > 0 {
		r.Dest = NewPrefixes(ps...)
	}
}
