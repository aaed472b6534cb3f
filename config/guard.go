package config

import "fmt"

// Limits on the shape of a document, checked before any TOML parser sees
// it: go-toml's cost grows faster than the file on deeply nested keys and
// long arrays (a 7 MB array took 12 s and 450 MiB to parse), so a hostile
// or broken file is refused here, with a position, in a single pass that
// allocates nothing.
const (
	// MaxDepth bounds how deep a value sits: table header parts, dotted
	// key parts, arrays and inline tables all count. ferry's own keys go
	// 6 levels deep at most.
	MaxDepth = 64
	// MaxKeys bounds the keys and table headers of one document:
	// go-toml's check for duplicate keys compares each key with those
	// before it (49,000 keys took 4.7 s).
	MaxKeys = 10_000
	// MaxItems bounds the keys, table headers and array elements of one
	// document.
	MaxItems = 100_000
)

// guard scans data as a TOML lexer would, skipping strings and comments,
// and returns the offset where the document first goes deeper than
// MaxDepth, or holds more than MaxKeys keys or MaxItems items, with a
// message; -1 and "" when it does none of these. It does not check the syntax: a document it
// passes may still be rejected by the parser.
func guard(data []byte) (int, string) {
	g := guardScan{}
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch c {
		case '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
			i--
			continue
		case '"', '\'':
			i = skipString(data, i) - 1
			continue
		}
		var msg string
		switch g.mode {
		case scanLineStart, scanKey:
			i, msg = g.key(data, i)
		case scanHeader:
			msg = g.header(c)
		case scanRest:
			if c == '\n' {
				g.newline()
			}
		case scanValue:
			msg = g.value(c)
		}
		if msg != "" {
			return i, msg
		}
		// A '}' closing an inline table is seen in key mode after its
		// last value when the table is empty or ends with ','.
		if g.mode == scanKey && c == '}' && len(g.stack) > 0 && g.stack[len(g.stack)-1].table {
			g.depth = g.stack[len(g.stack)-1].depth
			g.stack = g.stack[:len(g.stack)-1]
			g.mode = scanValue
		}
	}
	return -1, ""
}

// What guard's scan is in.
const (
	scanLineStart = iota // at the start of an expression: a key or a header
	scanKey              // in a key, after '{' or ','
	scanValue            // in a value
	scanHeader           // inside [table] or [[table]]
	scanRest             // after a header, to the end of the line
)

// guardScan is guard's state between bytes.
type guardScan struct {
	stack      []guardFrame
	mode       int
	base       int // depth of the table the keys belong to
	tableBase  int // depth of the current [table]
	dots       int // dots in the current key or header
	depth      int // depth of the current value
	arrayTable bool
	items      int
	keys       int
}

// guardFrame is an open array or inline table.
type guardFrame struct {
	table bool // an inline table, else an array
	depth int  // the depth of the container's own path
}

// newline ends a key-value or a header line outside any array or inline
// table.
func (g *guardScan) newline() {
	g.mode, g.base, g.dots = scanLineStart, g.tableBase, 0
}

// count adds an item, and a key when isKey, and says when there are too
// many.
func (g *guardScan) count(isKey bool) string {
	if isKey {
		if g.keys++; g.keys > MaxKeys {
			return tooManyKeys()
		}
	}
	if g.items++; g.items > MaxItems {
		return tooMany()
	}
	return ""
}

// key handles data[i] at the start of an expression or in a key. It
// returns where the scan is, past a header's second '['.
func (g *guardScan) key(data []byte, i int) (int, string) {
	switch data[i] {
	case '[':
		if g.mode == scanLineStart {
			g.mode, g.dots, g.arrayTable = scanHeader, 0, false
			if i+1 < len(data) && data[i+1] == '[' {
				g.arrayTable = true
				i++
			}
			return i, g.count(true)
		}
	case '.':
		if g.dots++; g.base+1+g.dots > MaxDepth {
			return i, tooDeep()
		}
	case '=':
		g.depth = g.base + 1 + g.dots
		g.dots = 0
		g.mode = scanValue
		if g.depth > MaxDepth {
			return i, tooDeep()
		}
		return i, g.count(true)
	case '\n':
		if len(g.stack) == 0 {
			g.newline()
		}
	}
	return i, ""
}

// header handles a byte inside a [table] or [[table]] header.
func (g *guardScan) header(c byte) string {
	switch c {
	case '.':
		if g.dots++; g.dots+2 > MaxDepth {
			return tooDeep()
		}
	case ']':
		g.tableBase = g.dots + 1
		if g.arrayTable {
			g.tableBase++
		}
		g.base, g.mode = g.tableBase, scanRest
	case '\n':
		g.newline()
	}
	return ""
}

// value handles a byte in a value.
func (g *guardScan) value(c byte) string {
	switch c {
	case '[', '{':
		g.stack = append(g.stack, guardFrame{table: c == '{', depth: g.depth})
		if c == '{' {
			g.mode, g.base, g.dots = scanKey, g.depth, 0
		} else {
			g.depth++
		}
		if g.depth > MaxDepth {
			return tooDeep()
		}
		return g.count(false)
	case ',':
		if len(g.stack) > 0 {
			if top := g.stack[len(g.stack)-1]; top.table {
				g.mode, g.base, g.dots = scanKey, top.depth, 0
			} else {
				g.depth = top.depth + 1
			}
		}
		return g.count(false)
	case ']', '}':
		if len(g.stack) > 0 {
			g.depth = g.stack[len(g.stack)-1].depth
			g.stack = g.stack[:len(g.stack)-1]
		}
	case '\n':
		if len(g.stack) == 0 {
			g.newline()
		}
	}
	return ""
}

func tooDeep() string {
	return fmt.Sprintf("nested more than %d levels deep (table header parts, dotted key parts, arrays and inline tables all count)", MaxDepth)
}

func tooManyKeys() string {
	return fmt.Sprintf("more than %d keys and tables", MaxKeys)
}

func tooMany() string {
	return fmt.Sprintf("more than %d keys, tables and array elements", MaxItems)
}

// skipString returns the offset just past the string that starts at
// data[i] (a '"' or '\”), or the end of the line for an unterminated
// one-line string.
func skipString(data []byte, i int) int {
	q := data[i]
	if i+2 < len(data) && data[i+1] == q && data[i+2] == q {
		// Multi-line: to the closing triple quote.
		for j := i + 3; j < len(data); j++ {
			switch {
			case data[j] == '\\' && q == '"':
				j++
			case data[j] == q && j+2 < len(data) && data[j+1] == q && data[j+2] == q:
				return j + 3
			}
		}
		return len(data)
	}
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			if q == '"' {
				j++
			}
		case q:
			return j + 1
		case '\n':
			return j
		}
	}
	return len(data)
}
