package auth

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
)

// Bounds of the groups file and of the groups of one user.
const (
	// maxGroupLine bounds a line of the groups file: about 2,000 user
	// names of 30 bytes. A larger group is written over several lines
	// with the same group name, as Apache allows.
	maxGroupLine = 64 << 10
	// maxUserGroups bounds the groups of one user in the file, and again
	// in the config: every access line of the user lists them.
	maxUserGroups = 256
)

// groupSet maps user names to their groups, each group once.
type groupSet map[string][]string

// add puts user in group; it reports the user's number of groups. A new
// user's name is copied, so that the set does not keep alive the whole
// file it was cut from.
func (gs groupSet) add(user, group string) int {
	l, ok := gs[user]
	if slices.Contains(l, group) {
		return len(l)
	}
	if !ok {
		user = strings.Clone(user)
	}
	l = append(l, group)
	gs[user] = l
	return len(l)
}

// watch is the watched file at path; nil when path is empty.
func watch(path string) *watched {
	if path == "" {
		return nil
	}
	return &watched{path: path}
}

// load reads the files at start, as they are (there is nothing to keep
// yet), and publishes the first table. A file that is missing or does not
// parse is an error naming its key.
func (p *Plugin) load() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.readUsers(); err != nil {
		return plugins.KeyErr("htpasswd", err)
	}
	if _, err := p.readGroups(); err != nil {
		return plugins.KeyErr("groups_file", err)
	}
	return p.publish()
}

// parseGroups reads the lines "group: user1 user2" of a groups file
// (Apache's AuthGroupFile): a group name, a colon, and user names
// separated by spaces or tabs. Blank lines and lines starting with # are
// skipped. A group may have several lines, whose users add up, and a
// user listed twice is in the group once. Errors read "FILE:LINE: ...".
func parseGroups(file string, data []byte) (groupSet, error) {
	out := make(groupSet)
	n := 0
	for line := range strings.Lines(string(data)) {
		n++
		where := file + ":" + strconv.Itoa(n)
		if len(line) > maxGroupLine {
			return nil, fmt.Errorf("%s: line longer than %d KiB: write the group over several lines", where, maxGroupLine>>10)
		}
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		group, users, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s: want group: user1 user2 ...", where)
		}
		group = strings.TrimSpace(group)
		if err := match.CheckGroup(group); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		group = strings.Clone(group) // the users keep it, not the file
		for _, user := range strings.Fields(users) {
			if err := checkName(user); err != nil {
				return nil, fmt.Errorf("%s: group %s: %w", where, group, err)
			}
			if out.add(user, group) > maxUserGroups {
				return nil, fmt.Errorf("%s: group %s: user %s is in more than %d groups", where, group, clip(user), maxUserGroups)
			}
		}
	}
	return out, nil
}

// parseInlineGroups checks the groups table of the config (group ->
// users). Errors name the key: "groups.admins[1]: ...".
func parseInlineGroups(groups map[string][]string) (groupSet, error) {
	out := make(groupSet)
	for _, group := range slices.Sorted(maps.Keys(groups)) {
		key := "groups." + keySegment(group)
		if err := match.CheckGroup(group); err != nil {
			return nil, plugins.KeyErr(key, err)
		}
		for i, user := range groups[group] {
			ukey := fmt.Sprintf("%s[%d]", key, i)
			if err := checkName(user); err != nil {
				return nil, plugins.KeyErr(ukey, err)
			}
			if out.add(user, group) > maxUserGroups {
				return nil, plugins.Errorf(ukey, "user %s is in more than %d groups", clip(user), maxUserGroups)
			}
		}
	}
	return out, nil
}

// joinGroups gives each user the groups of both sets, sorted, each once.
func joinGroups(a, b groupSet) groupSet {
	out := make(groupSet, max(len(a), len(b)))
	for _, gs := range []groupSet{a, b} {
		for user, groups := range gs {
			for _, g := range groups {
				out.add(user, g)
			}
		}
	}
	for _, groups := range out {
		slices.Sort(groups)
	}
	return out
}
