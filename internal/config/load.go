package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Error is one problem found in a configuration file: a TOML syntax error, an unknown key,
// a value of the wrong type or a value that fails validation. Line and Column are 1-based
// (the column counts bytes, as the Go compiler does) and 0 when unknown; File is empty
// when the text did not come from a file.
type Error struct {
	File   string
	Line   int
	Column int
	Key    string // dotted TOML key the problem is about; "" for syntax errors
	Msg    string // complete human-readable message, naming the key where there is one

	near string // key whose position to report when Key itself is not in the file
}

// Error formats the problem like a compiler diagnostic: "repute.toml:12:3: unknown key x".
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "":
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ", column %d", e.Column)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads the configuration file at path and parses it with Parse. Every *Error in the
// result carries path as its File.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return parse(path, data)
}

// Parse decodes a TOML configuration over Default and validates the result. Unknown keys,
// values of the wrong type and invalid values are all errors; when there are several, the
// returned error joins them (errors.Join) in file order, each an *Error with its position.
// Hostname may be left empty; FillDefaults supplies it.
func Parse(data []byte) (Config, error) {
	return parse("", data)
}

func parse(file string, data []byte) (Config, error) {
	// The TOML library skips a UTF-8 byte-order mark and reports offsets after it; do the
	// same so that positions found by scanKeys line up with the library's.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	text := string(data)
	lines := newLineIndex(data)

	// First pass: syntax, and the document as plain data so that every key can be checked
	// against the schema before anything is decoded into typed fields. The library's own
	// type errors carry no usable position; ours do.
	var raw map[string]any
	md, err := toml.Decode(text, &raw)
	if err != nil {
		return Config{}, syntaxError(file, len(data), lines, err)
	}
	positions := scanKeys(data, lines)
	if errs := checkSchema(md, raw, positions); len(errs) > 0 {
		return Config{}, joinErrors(file, errs)
	}

	cfg := Default()
	md, err = toml.Decode(text, &cfg)
	if err != nil {
		// checkSchema accepts only what decodes; reaching this is a bug in the schema check,
		// but the caller still deserves the library's message.
		return Config{}, syntaxError(file, len(data), lines, err)
	}
	if len(cfg.Outbound.SourceIPs) == 0 {
		cfg.Outbound.SourceIPs = nil // "source_ips = []" means the same as leaving it out
	}
	if len(cfg.MTASTS.MX) == 0 {
		cfg.MTASTS.MX = nil
	}
	if len(cfg.Outbound.PublicIPs) == 0 {
		cfg.Outbound.PublicIPs = nil
	}
	if len(cfg.Outbound.Routes) == 0 {
		cfg.Outbound.Routes = nil
	}
	if len(cfg.SMTP.DNSBL) == 0 {
		cfg.SMTP.DNSBL = nil
	}
	if len(cfg.Bounce.FeedbackAddresses) == 0 {
		cfg.Bounce.FeedbackAddresses = nil
	}
	if len(cfg.Bounce.BulkSenders) == 0 {
		cfg.Bounce.BulkSenders = nil
	}
	if len(cfg.Shaping.Provider) == 0 {
		cfg.Shaping.Provider = nil
	}
	if len(cfg.Warmup.FirstUse) == 0 {
		cfg.Warmup.FirstUse = nil
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0].String()
		p := positions.find(und[0])
		return Config{}, joinErrors(file, []*Error{{Line: p.line, Column: p.col, Key: k, Msg: "unknown key " + k}})
	}

	errs := cfg.validate()
	for _, e := range errs {
		p, ok := positions[e.Key]
		if !ok && e.near != "" {
			// A missing key is best pointed at the key that requires it.
			p, ok = positions[e.near]
		}
		if !ok {
			p = positions.find(splitKey(e.Key))
		}
		e.Line, e.Column = p.line, p.col
	}
	if len(errs) > 0 {
		return Config{}, joinErrors(file, errs)
	}
	return cfg, nil
}

// syntaxError converts a TOML library error into an *Error with a line and column.
func syntaxError(file string, size int, lines lineIndex, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: file, Msg: "invalid TOML: " + strings.TrimPrefix(err.Error(), "toml: ")}
	}
	// The library's "last key" is often not the key at fault, so it is left out of Key;
	// messages about duplicate keys name the key themselves.
	e := &Error{File: file, Line: pe.Position.Line, Msg: "syntax error: " + pe.Message}
	// The library's own column is computed by a helper that is off by one line when the
	// error starts a line, so derive it from the byte offset instead. When the offending
	// byte is the line end itself, the library has already counted the new line.
	e.Column = lines.column(pe.Position.Line, pe.Position.Start)
	if e.Column == 0 && pe.Position.Start >= 0 && pe.Position.Start <= size {
		e.Line, e.Column = lines.position(pe.Position.Start)
	}
	return e
}

// joinErrors sorts errs into file order, stamps the file name on them and joins them.
func joinErrors(file string, errs []*Error) error {
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if a.Line != b.Line {
			// Problems without a position (keys left at their defaults) go last.
			if a.Line == 0 || b.Line == 0 {
				return b.Line == 0
			}
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	if len(errs) == 1 {
		errs[0].File = file
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		e.File = file
		list[i] = e
	}
	return errors.Join(list...)
}

// checkSchema walks every key of the document, in file order, against the Config struct:
// unknown keys, tables where a value belongs (and the reverse) and wrongly typed values are
// reported with their position. Keys below a reported key are not reported again.
func checkSchema(md toml.MetaData, raw map[string]any, pos keyPositions) []*Error {
	var errs []*Error
	reported := map[string]bool{}
	root := reflect.TypeOf(Config{})
	for _, key := range md.Keys() {
		t := root
		var value any = raw
		for i := range key {
			k := key[:i+1]
			ks := k.String()
			if reported[ks] {
				break
			}
			var ft reflect.Type
			if t.Kind() == reflect.Map {
				ft = t.Elem() // any key names an element: a provider id, an IP
			} else {
				field, ok := lookupField(t, key[i])
				if !ok {
					errs = append(errs, unknownKey(k, t, pos))
					reported[ks] = true
					break
				}
				ft = field.Type
			}
			value = child(value, key[i])
			if value == nil {
				break // defined by a later key; it is checked then
			}
			if msg := checkType(ft, value); msg != "" {
				p := pos.find(k)
				errs = append(errs, &Error{Line: p.line, Column: p.col, Key: ks, Msg: ks + ": " + msg})
				reported[ks] = true
				break
			}
			t = ft
			if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
				// An array of tables: its keys are checked against the element type;
				// the decoder checks their values.
				t, value = t.Elem(), nil
			}
		}
	}
	return errs
}

// child returns the value of key in the table v, or nil.
func child(v any, key string) any {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	return m[key]
}

// lookupField finds the struct field whose toml tag is name. t must be a struct type.
func lookupField(t reflect.Type, name string) (reflect.StructField, bool) {
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if tomlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tomlName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if tag == "" || tag == "-" {
		return ""
	}
	return tag
}

var (
	durationType = reflect.TypeOf(Duration{})
	timeType     = reflect.TypeOf(time.Time{})
)

// checkType reports, as a message fragment, why value cannot be decoded into t; "" if it can.
func checkType(t reflect.Type, value any) string {
	switch {
	case t == durationType:
		s, ok := value.(string)
		if !ok {
			return fmt.Sprintf("expected a duration string such as \"30s\" or \"5m\", found %s", tomlTypeName(value))
		}
		if _, err := time.ParseDuration(s); err != nil {
			return fmt.Sprintf("invalid duration %q; use Go duration syntax such as \"30s\", \"5m\" or \"1h30m\"", s)
		}
		return ""
	case t == timeType:
		if _, ok := value.(time.Time); !ok {
			return fmt.Sprintf("expected a date such as 2026-01-10, found %s", tomlTypeName(value))
		}
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Map:
		if _, ok := value.(map[string]any); !ok {
			return fmt.Sprintf("expected a table, found %s", tomlTypeName(value))
		}
	case t.Kind() == reflect.String:
		if _, ok := value.(string); !ok {
			return fmt.Sprintf("expected a string, found %s", tomlTypeName(value))
		}
	case t.Kind() == reflect.Bool:
		if _, ok := value.(bool); !ok {
			return fmt.Sprintf("expected a boolean, found %s", tomlTypeName(value))
		}
	case t.Kind() == reflect.Float64 || t.Kind() == reflect.Float32:
		switch value.(type) {
		case int64, float64:
		default:
			return fmt.Sprintf("expected a number, found %s", tomlTypeName(value))
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		n, ok := value.(int64)
		if !ok {
			return fmt.Sprintf("expected an integer, found %s", tomlTypeName(value))
		}
		if reflect.Zero(t).OverflowInt(n) {
			return fmt.Sprintf("integer %d is too large", n)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		if list, ok := value.([]any); ok && len(list) == 0 {
			return "" // "routes = []": none
		}
		if _, ok := value.([]map[string]any); !ok {
			return fmt.Sprintf("expected an array of tables ([[...]]), found %s", tomlTypeName(value))
		}
	case t.Kind() == reflect.Slice:
		list, ok := value.([]any)
		if !ok {
			return fmt.Sprintf("expected an array, found %s", tomlTypeName(value))
		}
		for i, v := range list {
			if msg := checkType(t.Elem(), v); msg != "" {
				return fmt.Sprintf("element %d: %s", i+1, msg)
			}
		}
	default:
		// A field type this checker does not know; let the decoder judge it.
	}
	return ""
}

func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case time.Time:
		return "a date/time"
	default:
		return fmt.Sprintf("a value of type %T", v)
	}
}

// unknownKey builds the error for key k, whose last part is not a field of table t, with a
// suggestion when a field of t is spelt similarly.
func unknownKey(k toml.Key, t reflect.Type, pos keyPositions) *Error {
	ks := k.String()
	msg := "unknown key " + ks
	if s := suggest(k[len(k)-1], t); s != "" {
		msg += " (did you mean " + s + "?)"
	}
	p := pos.find(k)
	return &Error{Line: p.line, Column: p.col, Key: ks, Msg: msg}
}

// suggest returns the toml name of the field of t closest to name, if it is close enough to
// be a plausible misspelling.
func suggest(name string, t reflect.Type) string {
	if t.Kind() != reflect.Struct {
		return ""
	}
	best, bestDist := "", 3
	if len(name) <= 4 {
		bestDist = 2
	}
	for i := range t.NumField() {
		n := tomlName(t.Field(i))
		if n == "" {
			continue
		}
		if d := editDistance(strings.ToLower(name), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b, in bytes: the
// Levenshtein distance where swapping two adjacent characters also counts as one edit.
// Inputs longer than any key name are not worth comparing and return a large distance.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// splitKey turns a dotted key written by validate (plain bare parts) into a toml.Key.
func splitKey(s string) toml.Key {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ".")
	for i, p := range parts {
		// "routes[1]" names an element of an array of tables; positions are recorded by
		// key name only, so this points at the key's first occurrence.
		parts[i], _, _ = strings.Cut(p, "[")
	}
	return toml.Key(parts)
}

// lineIndex holds the byte offset at which each line starts, to turn offsets into
// line:column positions.
type lineIndex []int

func newLineIndex(data []byte) lineIndex {
	idx := lineIndex{0}
	for i, c := range data {
		if c == '\n' {
			idx = append(idx, i+1)
		}
	}
	return idx
}

// position returns the 1-based line and column of byte offset off.
func (l lineIndex) position(off int) (line, col int) {
	n := sort.Search(len(l), func(i int) bool { return l[i] > off }) // first line after off
	if n == 0 {
		return 1, off + 1
	}
	return n, off - l[n-1] + 1
}

// column returns the 1-based column of byte offset off on line, or 0 if off is not on it.
func (l lineIndex) column(line, off int) int {
	if line < 1 || line > len(l) || off < l[line-1] {
		return 0
	}
	if line < len(l) && off >= l[line] {
		return 0
	}
	return off - l[line-1] + 1
}

type keyPos struct{ line, col int }

// keyPositions maps a key (toml.Key.String form) to where it is first defined.
type keyPositions map[string]keyPos

// find returns the position of key, or of its longest defined prefix (a key inside an
// inline table the scanner could not follow is reported at the table), or zero.
func (p keyPositions) find(key toml.Key) keyPos {
	for n := len(key); n > 0; n-- {
		if kp, ok := p[key[:n].String()]; ok {
			return kp
		}
	}
	return keyPos{}
}

// scanKeys finds where every key of an already successfully parsed TOML document is
// defined: assignments (with dotted and quoted keys), table and array-of-table headers, and
// keys of inline tables. The TOML library knows these positions but does not export them.
// The scanner only needs to skip values correctly, not to understand them; faced with
// anything it does not expect it stops and returns what it has found, so positions are
// best effort but scanning never fails.
func scanKeys(data []byte, lines lineIndex) keyPositions {
	s := &keyScanner{src: data, lines: lines, pos: keyPositions{}}
	s.document()
	return s.pos
}

type keyScanner struct {
	src   []byte
	i     int
	lines lineIndex
	pos   keyPositions
}

func (s *keyScanner) peek(off int) byte {
	if s.i+off < len(s.src) {
		return s.src[s.i+off]
	}
	return 0
}

func (s *keyScanner) hasPrefix(p string) bool {
	return bytes.HasPrefix(s.src[s.i:], []byte(p))
}

// record notes the position of every prefix of table+key that has none yet; each prefix is
// placed at its own last part, so an unknown part of a dotted key is pointed at exactly.
func (s *keyScanner) record(table toml.Key, key toml.Key, offsets []int) {
	full := append(append(toml.Key{}, table...), key...)
	for n := len(table) + 1; n <= len(full); n++ {
		ks := full[:n].String()
		if _, ok := s.pos[ks]; ok {
			continue
		}
		line, col := s.lines.position(offsets[n-len(table)-1])
		s.pos[ks] = keyPos{line, col}
	}
}

// skipSpace skips spaces and tabs, and with newlines also line ends and comments.
func (s *keyScanner) skipSpace(newlines bool) {
	for s.i < len(s.src) {
		switch c := s.src[s.i]; {
		case c == ' ' || c == '\t':
			s.i++
		case newlines && (c == '\n' || c == '\r'):
			s.i++
		case newlines && c == '#':
			s.skipComment()
		default:
			return
		}
	}
}

func (s *keyScanner) skipComment() {
	for s.i < len(s.src) && s.src[s.i] != '\n' {
		s.i++
	}
}

func (s *keyScanner) document() {
	var table toml.Key
	for {
		s.skipSpace(true)
		if s.i >= len(s.src) {
			return
		}
		if s.src[s.i] == '[' {
			closing := "]"
			s.i++
			if s.peek(0) == '[' {
				closing = "]]"
				s.i++
			}
			s.skipSpace(false)
			key, offsets, ok := s.key()
			if !ok {
				return
			}
			s.skipSpace(false)
			if !s.hasPrefix(closing) {
				return
			}
			s.i += len(closing)
			s.record(nil, key, offsets)
			table = key
			continue
		}
		key, offsets, ok := s.key()
		if !ok {
			return
		}
		s.record(table, key, offsets)
		s.skipSpace(false)
		if s.peek(0) != '=' {
			return
		}
		s.i++
		full := append(append(toml.Key{}, table...), key...)
		if !s.value(full) {
			return
		}
	}
}

// key reads a possibly dotted key and returns its parts and the offset of each part.
func (s *keyScanner) key() (toml.Key, []int, bool) {
	var key toml.Key
	var offsets []int
	for {
		s.skipSpace(false)
		start := s.i
		part, ok := s.keyPart()
		if !ok {
			return nil, nil, false
		}
		key = append(key, part)
		offsets = append(offsets, start)
		s.skipSpace(false)
		if s.peek(0) != '.' {
			return key, offsets, true
		}
		s.i++
	}
}

func (s *keyScanner) keyPart() (string, bool) {
	switch s.peek(0) {
	case '"':
		return s.basicString()
	case '\'':
		end := bytes.IndexAny(s.src[s.i+1:], "'\n")
		if end < 0 || s.src[s.i+1+end] != '\'' {
			return "", false
		}
		part := string(s.src[s.i+1 : s.i+1+end])
		s.i += end + 2
		return part, true
	}
	start := s.i
	for s.i < len(s.src) && isBareKeyChar(s.src[s.i]) {
		s.i++
	}
	if s.i == start {
		return "", false
	}
	return string(s.src[start:s.i]), true
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// basicString reads a one-line "..." string starting at s.i and returns its value.
func (s *keyScanner) basicString() (string, bool) {
	var b strings.Builder
	for j := s.i + 1; j < len(s.src); j++ {
		switch c := s.src[j]; c {
		case '"':
			s.i = j + 1
			return b.String(), true
		case '\n':
			return "", false
		case '\\':
			if j+1 >= len(s.src) {
				return "", false
			}
			n := unescape(s.src[j+1:], &b)
			if n == 0 {
				return "", false
			}
			j += n
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

// unescape writes the character for the escape sequence that follows a backslash at the
// start of rest and returns how many bytes of rest it used, or 0 if it is not valid.
func unescape(rest []byte, b *strings.Builder) int {
	digits := 0
	switch rest[0] {
	case 'b':
		b.WriteByte('\b')
	case 't':
		b.WriteByte('\t')
	case 'n':
		b.WriteByte('\n')
	case 'f':
		b.WriteByte('\f')
	case 'r':
		b.WriteByte('\r')
	case 'e':
		b.WriteByte(0x1b)
	case '"', '\\':
		b.WriteByte(rest[0])
	case 'x':
		digits = 2
	case 'u':
		digits = 4
	case 'U':
		digits = 8
	default:
		return 0
	}
	if digits == 0 {
		return 1
	}
	if len(rest) < 1+digits {
		return 0
	}
	var r rune
	for _, c := range rest[1 : 1+digits] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0
		}
		r = r<<4 | rune(d)
	}
	b.WriteRune(r)
	return 1 + digits
}

// value skips one value. Keys of inline tables are recorded under prefix.
func (s *keyScanner) value(prefix toml.Key) bool {
	s.skipSpace(false)
	switch {
	case s.hasPrefix(`"""`):
		return s.multiline(`"""`, true)
	case s.hasPrefix(`'''`):
		return s.multiline(`'''`, false)
	case s.peek(0) == '"':
		_, ok := s.basicString()
		return ok
	case s.peek(0) == '\'':
		_, ok := s.keyPart()
		return ok
	case s.peek(0) == '[':
		return s.array(prefix)
	case s.peek(0) == '{':
		return s.inlineTable(prefix)
	}
	start := s.i
	for s.i < len(s.src) && !strings.ContainsRune(",]}#\r\n", rune(s.src[s.i])) {
		s.i++
	}
	return s.i > start
}

// multiline skips a multi-line string; up to two quotes right before the closing
// delimiter belong to the string.
func (s *keyScanner) multiline(delim string, escapes bool) bool {
	for j := s.i + 3; j < len(s.src); j++ {
		if escapes && s.src[j] == '\\' {
			j++
			continue
		}
		if bytes.HasPrefix(s.src[j:], []byte(delim)) {
			j += 3
			for n := 0; n < 2 && j < len(s.src) && s.src[j] == delim[0]; n++ {
				j++
			}
			s.i = j
			return true
		}
	}
	return false
}

// array skips an array. Keys of inline tables in it are recorded under the array's key,
// as the TOML library lists them.
func (s *keyScanner) array(prefix toml.Key) bool {
	s.i++ // [
	for {
		s.skipSpace(true)
		switch s.peek(0) {
		case ']':
			s.i++
			return true
		case ',':
			s.i++
			continue
		}
		if !s.value(prefix) {
			return false
		}
	}
}

func (s *keyScanner) inlineTable(prefix toml.Key) bool {
	s.i++ // {
	for {
		s.skipSpace(true)
		switch s.peek(0) {
		case '}':
			s.i++
			return true
		case ',':
			s.i++
			continue
		}
		key, offsets, ok := s.key()
		if !ok {
			return false
		}
		if prefix != nil {
			s.record(prefix, key, offsets)
		}
		s.skipSpace(false)
		if s.peek(0) != '=' {
			return false
		}
		s.i++
		var sub toml.Key
		if prefix != nil {
			sub = append(append(toml.Key{}, prefix...), key...)
		}
		if !s.value(sub) {
			return false
		}
	}
}
