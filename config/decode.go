package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// problem is something wrong with one document, before it is given a file
// position.
type problem struct {
	path    string
	off     int  // offset in the document; -1: find it from path
	atValue bool // off (or path) designates the value, not the key
	msg     string
}

// decodeResult is what decodeStrict found.
type decodeResult struct {
	problems []problem
	// complete is true when the decoder went through the whole document
	// (maybe without some removed key-values); false when it stopped early
	// and the target is only partly filled.
	complete bool
	// removed lists the paths of the expressions removed from the document
	// so that decoding could go on.
	removed []string
}

// maxRemovals bounds the decode attempts of decodeStrict.
const maxRemovals = 100

// decodeStrict decodes data into v, rejecting unknown keys, and reports
// every problem rather than the first. generic is data decoded into a
// map[string]any and x its index.
//
// go-toml stops at the first bad value and reports unknown keys only at the
// end, so a file with one bad value and one unknown key would need two
// rounds of fixes. Instead, values are first checked against v's type (see
// checker); each bad key-value is reported and blanked out of a copy of the
// document (spaces keep every position), which is then decoded. A decode
// error that the check missed is handled the same way, up to maxRemovals.
func decodeStrict(data []byte, x *index, generic map[string]any, v any) decodeResult {
	var res decodeResult
	reported := pathSet{}
	add := func(p problem) {
		if reported.covers(p.path) {
			return // one problem per key is enough
		}
		reported.add(p.path)
		res.problems = append(res.problems, p)
	}

	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		c := checker{x: x}
		c.check("", generic, rv.Type().Elem())
		for _, p := range c.problems {
			add(p)
		}
	}

	buf := append([]byte(nil), data...)
	blanked := map[int]bool{}
	remove := func(path string) bool {
		for p := path; p != ""; p = parentKey(p) {
			e := x.get(p)
			if e == nil || e.blankEnd <= e.blankStart {
				continue
			}
			if blanked[e.blankStart] {
				return false
			}
			blanked[e.blankStart] = true
			for i := e.blankStart; i < e.blankEnd && i < len(buf); i++ {
				if buf[i] != '\n' {
					buf[i] = ' '
				}
			}
			res.removed = append(res.removed, e.blankPath())
			return true
		}
		return false
	}
	for _, p := range res.problems {
		remove(p.path)
	}

	// A retry starts from v as the caller gave it (it may hold defaults).
	var saved reflect.Value
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		saved = reflect.New(rv.Type().Elem()).Elem()
		saved.Set(rv.Elem())
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 && saved.IsValid() {
			rv.Elem().Set(saved)
		}
		err := toml.NewDecoder(bytes.NewReader(buf)).DisallowUnknownFields().Decode(v)
		if err == nil {
			res.complete = true
			return res
		}
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			// The checker has removed the unknown keys it knows of: these
			// are the few it missed. Locating one costs a pass over the
			// index, so only as many as are shown are located.
			for i := range sm.Errors[:min(len(sm.Errors), MaxProblems)] {
				path, off := x.locate(&sm.Errors[i])
				add(problem{path: path, off: off, msg: "unknown key"})
			}
			res.complete = true
			return res
		}
		var de *toml.DecodeError
		if !errors.As(err, &de) {
			add(problem{off: -1, msg: err.Error()})
			return res
		}
		path, off := x.locate(de)
		add(problem{path: path, off: off, atValue: true, msg: decodeMessage(de)})
		if attempt >= maxRemovals || !remove(path) {
			return res
		}
	}
}

// locate returns the path and offset of a go-toml error. go-toml's own key
// lacks array indexes (and, inside inline tables, its table), so the path
// comes from the index when it agrees with the key.
func (x *index) locate(de *toml.DecodeError) (string, int) {
	off := x.offset(de.Position())
	key := ""
	for _, k := range de.Key() {
		key = joinKey(key, k)
	}
	if off >= 0 {
		if e := x.entryAt(off); e != nil {
			p := e.path()
			s := stripIndexes(p)
			if key == "" || s == key || strings.HasSuffix(s, "."+key) {
				return p, off
			}
		}
	}
	if key != "" {
		return key, -1
	}
	return "", off
}

var mismatchRE = regexp.MustCompile(`^cannot decode TOML (.+?) into (?:struct field \S+ of type )?(\S+)$`)

// decodeMessage is a go-toml error's message in ferry's words.
func decodeMessage(de *toml.DecodeError) string {
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	if m := mismatchRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("must be %s, not %s", goTypeWords(m[2]), article(m[1]))
	}
	return msg
}

// article prefixes a TOML type name with "a" or "an".
func article(s string) string {
	if s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an " + s
	}
	return "a " + s
}

// goTypeWords describes a Go type named in a go-toml message.
func goTypeWords(t string) string {
	t = strings.TrimLeft(t, "*")
	if strings.HasPrefix(t, "[]") {
		return "an array"
	}
	switch {
	case t == "string":
		return "a string"
	case t == "bool":
		return "a boolean"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "map["):
		return "a table"
	}
	return "a value of type " + t
}

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
	switch t.Kind() {
	case reflect.String:
		if _, ok := val.(string); !ok {
			c.mismatch(path, val, t)
		}
	case reflect.Bool:
		if _, ok := val.(bool); !ok {
			c.mismatch(path, val, t)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if _, ok := val.(int64); !ok {
			c.mismatch(path, val, t)
		}
	case reflect.Float32, reflect.Float64:
		switch val.(type) {
		case int64, float64:
		default:
			c.mismatch(path, val, t)
		}
	case reflect.Slice, reflect.Array:
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
	case reflect.Struct:
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
	case reflect.Map:
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
