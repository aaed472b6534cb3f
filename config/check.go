package config

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType        = reflect.TypeFor[Duration]()
	sizeType            = reflect.TypeFor[Size]()
	cidrType            = reflect.TypeFor[CIDR]()
	timeType            = reflect.TypeFor[time.Time]()
)

// checker compares a generically decoded document with the Go type it is
// to be decoded into, and reports each value go-toml would reject or
// misread: unknown keys, wrong TOML types (go-toml loses the position of
// some of these, for example inside nested arrays), text values their
// UnmarshalText rejects, durations given as bare numbers (go-toml would
// store 300 as 300ns), negative sizes, and keys that match a tagged field
// only when case is ignored. go-toml's strict mode stays on as a safety
// net.
type checker struct {
	x        *index
	problems []problem
}

func (c *checker) add(path string, atValue bool, format string, args ...any) {
	c.problems = append(c.problems, problem{path: path, off: -1, atValue: atValue, msg: fmt.Sprintf(format, args...)})
}

func (c *checker) check(path string, val any, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if val == nil || t.Kind() == reflect.Interface {
		return
	}
	switch val.(type) {
	case time.Time, toml.LocalDate, toml.LocalTime, toml.LocalDateTime:
		if t.Kind() != reflect.Struct {
			c.mismatch(path, val, t)
		}
		return // go-toml decides which date and time types fit
	}
	if t != timeType && reflect.PointerTo(t).Implements(textUnmarshalerType) {
		c.text(path, val, t)
		return
	}
	ok := true
	switch k := t.Kind(); {
	case k == reflect.String:
		_, ok = val.(string)
	case k == reflect.Bool:
		_, ok = val.(bool)
	case isIntKind(k):
		_, ok = val.(int64)
	case k == reflect.Float32 || k == reflect.Float64:
		switch val.(type) {
		case int64, float64:
		default:
			ok = false
		}
	case k == reflect.Slice || k == reflect.Array:
		c.array(path, val, t)
	case k == reflect.Struct:
		c.table(path, val, t)
	case k == reflect.Map:
		c.mapping(path, val, t)
	}
	if !ok {
		c.mismatch(path, val, t)
	}
}

// array checks a value for a slice or array type.
func (c *checker) array(path string, val any, t reflect.Type) {
	arr, ok := val.([]any)
	if !ok {
		if _, isTable := val.(map[string]any); isTable && isTableType(t.Elem()) {
			c.add(path, false, "must be an array of tables: write [[%s]]", stripIndexes(path))
			return
		}
		c.mismatch(path, val, t)
		return
	}
	for i, e := range arr {
		c.check(indexKey(path, i), e, t.Elem())
	}
}

// table checks a value for a struct type: its keys must be the struct's.
func (c *checker) table(path string, val any, t reflect.Type) {
	m, ok := val.(map[string]any)
	if !ok {
		c.mismatch(path, val, t)
		return
	}
	exact, folded := structFields(t)
	for _, k := range sortedKeys(m) {
		kp := joinKey(path, k)
		f, ok := exact[k]
		if !ok {
			f, ok = folded[strings.ToLower(k)]
			switch {
			case !ok:
				c.add(kp, false, "unknown key")
				continue
			case f.tagged:
				c.add(kp, false, "unknown key (keys are case-sensitive: did you mean %q?)", f.name)
			}
		}
		c.check(kp, m[k], f.typ)
	}
}

// mapping checks a value for a map type.
func (c *checker) mapping(path string, val any, t reflect.Type) {
	m, ok := val.(map[string]any)
	if !ok {
		c.mismatch(path, val, t)
		return
	}
	if t.Key().Kind() != reflect.String {
		return
	}
	for _, k := range sortedKeys(m) {
		c.check(joinKey(path, k), m[k], t.Elem())
	}
}

// text checks a value for a type that implements encoding.TextUnmarshaler.
func (c *checker) text(path string, val any, t reflect.Type) {
	var text string
	switch v := val.(type) {
	case string:
		text = v
	case int64:
		switch {
		case t == durationType && v != 0:
			c.add(path, true, "must be a string with a unit, like \"%ds\" (a bare number has no unit)", v)
			return
		case t == sizeType && v < 0:
			c.add(path, true, "invalid size %d: must not be negative", v)
			return
		case isIntKind(t.Kind()):
			return // go-toml stores integers into integer types directly
		}
		text = c.x.raw(path)
	case float64, bool:
		if t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64 {
			if _, isFloat := val.(float64); isFloat {
				return
			}
		}
		if t.Kind() == reflect.Bool {
			if _, isBool := val.(bool); isBool {
				return
			}
		}
		// go-toml hands the raw text to UnmarshalText, and loses the
		// position of its error: check it here.
		text = c.x.raw(path)
		if text == "" {
			text = fmt.Sprint(v)
		}
	default:
		c.mismatch(path, val, t)
		return
	}
	u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
	if err := u.UnmarshalText([]byte(text)); err != nil {
		c.add(path, true, "%s", err)
	}
}

func (c *checker) mismatch(path string, val any, t reflect.Type) {
	c.add(path, true, "must be %s, not %s", typeWords(t), valueWords(val))
}

// typeWords describes what a Go type accepts, for messages.
func typeWords(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case durationType:
		return `a duration like "10s"`
	case sizeType:
		return `a size like "32KiB"`
	case cidrType:
		return `a CIDR like "10.0.0.0/8"`
	}
	if t != timeType && reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if isTableType(t.Elem()) {
			return "an array of tables"
		}
		return "an array"
	case reflect.Struct, reflect.Map:
		return "a table"
	}
	if isIntKind(t.Kind()) {
		return "an integer"
	}
	return "a " + t.String()
}

// valueWords names the TOML type of a generically decoded value.
func valueWords(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}

func isIntKind(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

func isTableType(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return false
	}
	return t.Kind() == reflect.Struct || t.Kind() == reflect.Map
}

// field is a struct field as go-toml matches it to a key.
type field struct {
	name   string // the key that matches exactly
	tagged bool   // named by a toml tag: other casings are mistakes
	typ    reflect.Type
}

// structFields lists the keys of struct type t the way go-toml does: the
// toml tag or the field name, embedded untagged structs flattened, "-"
// skipped. folded is keyed by the lowercased key.
func structFields(t reflect.Type) (exact, folded map[string]field) {
	exact, folded = map[string]field{}, map[string]field{}
	addStructFields(t, exact, folded, map[reflect.Type]bool{})
	return exact, folded
}

func addStructFields(t reflect.Type, exact, folded map[string]field, visiting map[reflect.Type]bool) {
	if visiting[t] {
		return
	}
	visiting[t] = true
	defer delete(visiting, t)
	var embedded []reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, tagged := f.Tag.Lookup("toml")
		if tagged && tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		fd := field{name: name, tagged: name != "", typ: f.Type}
		if name == "" {
			fd.name = f.Name
		}
		if _, ok := exact[fd.name]; !ok {
			exact[fd.name] = fd
		}
		if _, ok := folded[strings.ToLower(fd.name)]; !ok {
			folded[strings.ToLower(fd.name)] = fd
		}
	}
	for _, et := range embedded {
		addStructFields(et, exact, folded, visiting)
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
