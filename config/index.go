package config

import (
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// index records where every key of one TOML document is, by its full path:
// "log.level", "listener[1].name", "plugin[0].max_bytes",
// "listener[0].trusted_proxies[2]". Arrays of tables and arrays (also of
// inline tables) are numbered from 0, in document order. Keys that are not
// bare are quoted: `a."b.c"`.
//
// It serves three purposes: semantic errors found after decoding get the
// position of their key; a decode error's position is mapped back to its
// full key path; and the bytes of a bad key-value can be blanked out so the
// decoder can go on and report the remaining problems too.
//
// The entries form a tree, one node per path segment ("listener", "[1]",
// "name"), so that the index takes memory in proportion to the document:
// a key nested n levels deep costs one node, not a copy of its n-part
// path (40,000 levels took 3 GB that way). Full paths are built only when
// asked for.
type index struct {
	data  []byte
	lines []int    // offset of the first byte of each line
	root  *entry   // the document; never recorded
	order []*entry // recorded entries, in document order
	nodes int      // entries in the tree, recorded or not
}

// entry is one key, table header or array element. Offsets are in bytes
// from the start of the document.
type entry struct {
	parent   *entry
	seg      string            // the last segment of the path: a key as joinKey writes it, or "[i]"
	children map[string]*entry // by segment; nil when there are none
	tables   int               // the length of the array of tables at this path
	// recorded is true for paths the document sets; other entries are
	// only nodes on the way to them.
	recorded bool

	key      int // the key, the header's key, or the array element
	val      int // the value; -1 for table headers
	valEnd   int // end of a scalar value; -1 if unknown
	implicit bool

	// start and end delimit the bytes the entry covers, for mapping an
	// offset back to a path; end == start when not mappable.
	start, end int
	// blankStart and blankEnd delimit the whole top-level expression (or
	// table section) holding the entry, whose entry is blank. Blanking
	// those bytes removes the entry and keeps every other position.
	blankStart, blankEnd int
	blank                *entry
}

// path returns the entry's full key path.
func (e *entry) path() string {
	var segs []string
	for n := e; n != nil && n.parent != nil; n = n.parent {
		segs = append(segs, n.seg)
	}
	var b strings.Builder
	for i := len(segs) - 1; i >= 0; i-- {
		if b.Len() > 0 && !strings.HasPrefix(segs[i], "[") {
			b.WriteByte('.')
		}
		b.WriteString(segs[i])
	}
	return b.String()
}

// blankPath returns the path of the expression that blanking e removes.
func (e *entry) blankPath() string {
	if e.blank == nil {
		return ""
	}
	return e.blank.path()
}

// child returns the node for segment seg under e, creating it if needed.
func (x *index) child(e *entry, seg string) *entry {
	if c, ok := e.children[seg]; ok {
		return c
	}
	if e.children == nil {
		e.children = map[string]*entry{}
	}
	c := &entry{parent: e, seg: seg}
	e.children[seg] = c
	x.nodes++
	return c
}

// buildIndex walks data with go-toml's parser. It returns the parser's
// error, if any, with the index built so far.
func buildIndex(data []byte) (*index, error) {
	x := newIndex(data)
	var p unstable.Parser
	p.Reset(data)
	table := x.root
	var section *entry // the open [table], whose section ends at the next header
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			start := x.headerStart(e)
			if section != nil {
				section.blankEnd = start
				section = nil
			}
			var h *entry
			table, h = x.header(e, start)
			if e.Kind == unstable.Table {
				section = h
			}
		case unstable.KeyValue:
			s, end := int(e.Raw.Offset), int(e.Raw.Offset+e.Raw.Length)
			x.keyValue(table, e, s, end, nil)
		}
	}
	return x, p.Error()
}

// newIndex returns an empty index of data.
func newIndex(data []byte) *index {
	x := &index{data: data, root: &entry{}}
	x.lines = append(x.lines, 0)
	for i, c := range data {
		if c == '\n' {
			x.lines = append(x.lines, i+1)
		}
	}
	return x
}

// add records at n what e says, unless n is already recorded explicitly.
func (x *index) add(n *entry, e entry) *entry {
	if n.recorded && (!n.implicit || e.implicit) {
		return n
	}
	if !n.recorded {
		x.order = append(x.order, n)
	}
	n.recorded = true
	n.key, n.val, n.valEnd, n.implicit = e.key, e.val, e.valEnd, e.implicit
	n.start, n.end = e.start, e.end
	n.blankStart, n.blankEnd, n.blank = e.blankStart, e.blankEnd, e.blank
	return n
}

// headerStart is the offset of the '[' that opens the table header e.
func (x *index) headerStart(e *unstable.Node) int {
	it := e.Key()
	if !it.Next() {
		return 0
	}
	s := int(it.Node().Raw.Offset)
	for s > 0 && (x.data[s-1] == ' ' || x.data[s-1] == '\t' || x.data[s-1] == '[') {
		s--
	}
	return s
}

// header records a [table] or [[array table]] header starting at start and
// returns the table's entry and the header's entry.
func (x *index) header(e *unstable.Node, start int) (*entry, *entry) {
	n := x.root
	first, end := -1, -1
	it := e.Key()
	for it.Next() {
		k := it.Node()
		off := int(k.Raw.Offset)
		if first < 0 {
			first = off
		}
		end = int(k.Raw.Offset + k.Raw.Length)
		n = x.child(n, keySeg(string(k.Data)))
		if it.IsLast() {
			break
		}
		x.add(n, entry{key: off, val: -1, valEnd: -1, implicit: true, start: off, end: off})
		if n.tables > 0 {
			n = x.child(n, "["+strconv.Itoa(n.tables-1)+"]")
		}
	}
	h := entry{key: first, val: -1, valEnd: -1, start: first, end: end}
	if e.Kind == unstable.ArrayTable {
		x.add(n, entry{key: first, val: -1, valEnd: -1, start: first, end: first})
		i := n.tables
		n.tables++
		n = x.child(n, "["+strconv.Itoa(i)+"]")
	} else {
		h.blankStart, h.blankEnd, h.blank = start, len(x.data), n
	}
	return n, x.add(n, h)
}

// keyValue records the key-value kv under the table prefix. exprStart and
// exprEnd delimit the top-level expression holding it, whose entry is
// expr (nil for kv itself).
func (x *index) keyValue(prefix *entry, kv *unstable.Node, exprStart, exprEnd int, expr *entry) {
	n := prefix
	first, keyEnd := -1, -1
	var implicit []*entry
	var implicitOff []int
	it := kv.Key()
	for it.Next() {
		k := it.Node()
		off := int(k.Raw.Offset)
		if first < 0 {
			first = off
		}
		keyEnd = int(k.Raw.Offset + k.Raw.Length)
		n = x.child(n, keySeg(string(k.Data)))
		if !it.IsLast() {
			implicit = append(implicit, n)
			implicitOff = append(implicitOff, off)
		}
	}
	if expr == nil {
		expr = n
	}
	for i, e := range implicit {
		off := implicitOff[i]
		x.add(e, entry{key: off, val: -1, valEnd: -1, implicit: true, start: off, end: off,
			blankStart: exprStart, blankEnd: exprEnd, blank: expr})
	}
	v := kv.Value()
	vs, ve := x.valueStart(v, keyEnd), -1
	if isScalar(v) {
		ve = int(v.Raw.Offset + v.Raw.Length)
	}
	x.add(n, entry{key: first, val: vs, valEnd: ve,
		start: int(kv.Raw.Offset), end: int(kv.Raw.Offset + kv.Raw.Length),
		blankStart: exprStart, blankEnd: exprEnd, blank: expr})
	x.value(n, v, vs, exprStart, exprEnd, expr)
}

// value records the elements of arrays and the keys of inline tables.
func (x *index) value(n *entry, v *unstable.Node, start, exprStart, exprEnd int, expr *entry) {
	switch v.Kind {
	case unstable.Array:
		i := 0
		next := x.skipFiller(start + 1) // where the next element starts, if known
		for it := v.Children(); it.Next(); {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			e := entry{key: start, val: start, valEnd: -1,
				blankStart: exprStart, blankEnd: exprEnd, blank: expr}
			if c.Raw.Length > 0 {
				e.key, e.val = int(c.Raw.Offset), int(c.Raw.Offset)
				e.start, e.end = e.key, int(c.Raw.Offset+c.Raw.Length)
			} else if next >= 0 {
				e.key, e.val = next, next
			}
			if isScalar(c) {
				e.valEnd = e.end
				next = x.skipFiller(e.end)
			} else {
				next = -1
			}
			en := x.add(x.child(n, "["+strconv.Itoa(i)+"]"), e)
			x.value(en, c, en.val, exprStart, exprEnd, expr)
			i++
		}
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				x.keyValue(n, c, exprStart, exprEnd, expr)
			}
		}
	}
}

func isScalar(v *unstable.Node) bool {
	return v.Kind != unstable.Array && v.Kind != unstable.InlineTable && v.Raw.Length > 0
}

// valueStart is the offset of the value v, whose key ends at keyEnd. Array
// nodes carry no position, so it is found after the '='.
func (x *index) valueStart(v *unstable.Node, keyEnd int) int {
	if v.Raw.Length > 0 {
		return int(v.Raw.Offset)
	}
	i := keyEnd
	for i < len(x.data) && (x.data[i] == ' ' || x.data[i] == '\t' || x.data[i] == '=') {
		i++
	}
	return i
}

// skipFiller skips whitespace, newlines, commas and comments inside an
// array from offset i.
func (x *index) skipFiller(i int) int {
	for i < len(x.data) {
		switch x.data[i] {
		case ' ', '\t', '\r', '\n', ',':
			i++
		case '#':
			for i < len(x.data) && x.data[i] != '\n' {
				i++
			}
		default:
			return i
		}
	}
	return i
}

// get returns the entry the document records at path, or nil.
func (x *index) get(path string) *entry {
	if e, exact := x.lookup(path); exact {
		return e
	}
	return nil
}

// has reports whether the document sets path.
func (x *index) has(path string) bool {
	return x.get(path) != nil
}

// lookup returns the entry of path or of its nearest recorded ancestor.
func (x *index) lookup(path string) (*entry, bool) {
	var best *entry
	n := x.root
	exact := false
	for seg, rest := firstSeg(path); seg != ""; seg, rest = firstSeg(rest) {
		c, ok := n.children[seg]
		if !ok {
			return best, false
		}
		n = c
		exact = rest == ""
		if n.recorded {
			best = n
		}
	}
	return best, exact && best == n && best != nil
}

// offsetOf returns where path is: its value when atValue and the document
// has one, else its key. For a path the document does not set, it returns
// the nearest enclosing table's header, and -1 when there is none.
func (x *index) offsetOf(path string, atValue bool) int {
	e, exact := x.lookup(path)
	switch {
	case e == nil:
		return -1
	case exact && atValue && e.val >= 0:
		return e.val
	}
	return e.key
}

// entryAt returns the innermost entry covering offset off, or nil.
func (x *index) entryAt(off int) *entry {
	var best *entry
	for _, e := range x.order {
		if e.start <= off && off < e.end && (best == nil || e.end-e.start <= best.end-best.start) {
			best = e
		}
	}
	return best
}

// lineCol converts an offset to a 1-based line and byte column.
func (x *index) lineCol(off int) (line, col int) {
	if off < 0 {
		return 1, 1
	}
	if off > len(x.data) {
		off = len(x.data)
	}
	i := sort.Search(len(x.lines), func(i int) bool { return x.lines[i] > off }) - 1
	return i + 1, off - x.lines[i] + 1
}

// offset converts a 1-based line and column to an offset.
func (x *index) offset(line, col int) int {
	if line < 1 || line > len(x.lines) {
		return -1
	}
	off := x.lines[line-1] + col - 1
	if off < 0 || off > len(x.data) {
		return -1
	}
	return off
}

// raw returns the source text of a scalar value, or "" when unknown.
func (x *index) raw(path string) string {
	e := x.get(path)
	if e == nil || e.val < 0 || e.valEnd < e.val || e.valEnd > len(x.data) {
		return ""
	}
	return string(x.data[e.val:e.valEnd])
}
