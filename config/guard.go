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
	const (
		lineStart = iota // at the start of an expression: a key or a header
		key              // in a key, after '{' or ','
		value            // in a value
		header           // inside [table] or [[table]]
		rest             // after a header, to the end of the line
	)
	type frame struct {
		table bool // an inline table, else an array
		depth int  // the depth of the container's own path
	}
	var stack []frame
	mode := lineStart
	base := 0      // depth of the table the keys belong to
	tableBase := 0 // depth of the current [table]
	dots := 0      // dots in the current key or header
	depth := 0     // depth of the current value
	arrayTable := false
	items, keys := 0, 0
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
		switch mode {
		case lineStart, key:
			switch c {
			case '[':
				if mode == lineStart {
					mode, dots, arrayTable = header, 0, false
					if i+1 < len(data) && data[i+1] == '[' {
						arrayTable = true
						i++
					}
					if keys++; keys > MaxKeys {
						return i, tooManyKeys()
					}
					if items++; items > MaxItems {
						return i, tooMany()
					}
				}
			case '.':
				if dots++; base+1+dots > MaxDepth {
					return i, tooDeep()
				}
			case '=':
				depth = base + 1 + dots
				dots = 0
				mode = value
				if depth > MaxDepth {
					return i, tooDeep()
				}
				if keys++; keys > MaxKeys {
					return i, tooManyKeys()
				}
				if items++; items > MaxItems {
					return i, tooMany()
				}
			case '\n':
				if len(stack) == 0 {
					mode, base, dots = lineStart, tableBase, 0
				}
			}
		case header:
			switch c {
			case '.':
				if dots++; dots+2 > MaxDepth {
					return i, tooDeep()
				}
			case ']':
				tableBase = dots + 1
				if arrayTable {
					tableBase++
				}
				base, mode = tableBase, rest
			case '\n':
				mode, base, dots = lineStart, tableBase, 0
			}
		case rest:
			if c == '\n' {
				mode, base, dots = lineStart, tableBase, 0
			}
		case value:
			switch c {
			case '[', '{':
				stack = append(stack, frame{table: c == '{', depth: depth})
				if c == '{' {
					mode, base, dots = key, depth, 0
				} else {
					depth++
				}
				if depth > MaxDepth {
					return i, tooDeep()
				}
				if items++; items > MaxItems {
					return i, tooMany()
				}
			case ',':
				if len(stack) > 0 {
					if top := stack[len(stack)-1]; top.table {
						mode, base, dots = key, top.depth, 0
					} else {
						depth = top.depth + 1
					}
				}
				if items++; items > MaxItems {
					return i, tooMany()
				}
			case ']', '}':
				if len(stack) > 0 {
					depth = stack[len(stack)-1].depth
					stack = stack[:len(stack)-1]
				}
			case '\n':
				if len(stack) == 0 {
					mode, base, dots = lineStart, tableBase, 0
				}
			}
		}
		// A '}' closing an inline table is seen in key mode after its
		// last value when the table is empty or ends with ','.
		if mode == key && c == '}' && len(stack) > 0 && stack[len(stack)-1].table {
			depth = stack[len(stack)-1].depth
			stack = stack[:len(stack)-1]
			mode = value
		}
	}
	return -1, ""
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
