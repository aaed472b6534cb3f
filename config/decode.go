package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

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
// document (spaces keep every position), which is then decoded by go-toml
// in its strict mode. A decode error that the check missed is handled the
// same way, up to maxRemovals; unknown keys the check missed come from
// go-toml's StrictMissingError, all at once.
func decodeStrict(data []byte, x *index, generic map[string]any, v any) decodeResult {
	d := &strictDecoder{x: x, buf: append([]byte(nil), data...), blanked: map[int]bool{}, reported: pathSet{}}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		c := checker{x: x}
		c.check("", generic, rv.Type().Elem())
		for _, p := range c.problems {
			d.add(p)
		}
	}
	for _, p := range d.res.problems {
		d.remove(p.path)
	}
	d.decode(v)
	return d.res
}

// strictDecoder is the state of one decodeStrict.
type strictDecoder struct {
	x        *index
	buf      []byte       // the document, with bad expressions blanked out
	blanked  map[int]bool // start offsets of the expressions blanked
	reported pathSet
	res      decodeResult
}

// add records p, unless a problem with its key or one holding it is
// already recorded: one problem per key is enough.
func (d *strictDecoder) add(p problem) {
	if d.reported.covers(p.path) {
		return
	}
	d.reported.add(p.path)
	d.res.problems = append(d.res.problems, p)
}

// remove blanks out the expression holding path (or the nearest enclosing
// one the index knows), keeping every newline so that positions hold. It
// returns false when there is nothing left to blank.
func (d *strictDecoder) remove(path string) bool {
	for p := path; p != ""; p = parentKey(p) {
		e := d.x.get(p)
		if e == nil || e.blankEnd <= e.blankStart {
			continue
		}
		if d.blanked[e.blankStart] {
			return false
		}
		d.blanked[e.blankStart] = true
		for i := e.blankStart; i < e.blankEnd && i < len(d.buf); i++ {
			if d.buf[i] != '\n' {
				d.buf[i] = ' '
			}
		}
		d.res.removed = append(d.res.removed, e.blankPath())
		return true
	}
	return false
}

// decode runs go-toml's strict decoder over buf until it goes through,
// blanking out what it stops at.
func (d *strictDecoder) decode(v any) {
	// A retry starts from v as the caller gave it (it may hold defaults).
	rv := reflect.ValueOf(v)
	var saved reflect.Value
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		saved = reflect.New(rv.Type().Elem()).Elem()
		saved.Set(rv.Elem())
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 && saved.IsValid() {
			rv.Elem().Set(saved)
		}
		err := toml.NewDecoder(bytes.NewReader(d.buf)).DisallowUnknownFields().Decode(v)
		if err == nil {
			d.res.complete = true
			return
		}
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			// The checker has removed the unknown keys it knows of: these
			// are the few it missed. Locating one costs a pass over the
			// index, so only as many as are shown are located.
			for i := range sm.Errors[:min(len(sm.Errors), MaxProblems)] {
				path, off := d.x.locate(&sm.Errors[i])
				d.add(problem{path: path, off: off, msg: "unknown key"})
			}
			d.res.complete = true
			return
		}
		var de *toml.DecodeError
		if !errors.As(err, &de) {
			d.add(problem{off: -1, msg: err.Error()})
			return
		}
		path, off := d.x.locate(de)
		d.add(problem{path: path, off: off, atValue: true, msg: decodeMessage(de)})
		if attempt >= maxRemovals || !d.remove(path) {
			return
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
