package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Formats a report can be written in.
const (
	CSV  = "csv"
	JSON = "json"
)

// NewSink returns a sink writing format to w. Rows are written as they
// arrive; the JSON document is one object whose rows array is streamed.
func NewSink(format string, w io.Writer) (Sink, error) {
	switch format {
	case CSV:
		return &csvSink{w: csv.NewWriter(w)}, nil
	case JSON:
		return &jsonSink{w: bufio.NewWriterSize(w, 32<<10)}, nil
	}
	return nil, fieldErr("format", "must be csv or json")
}

// csvSink writes a header line, one line per row, and a last line whose
// first field is "total" with the totals under their columns (RFC 4180,
// CRLF-free: encoding/csv's default \n line ends).
type csvSink struct {
	w    *csv.Writer
	cols []Column
	rec  []string
	n    int
}

func (c *csvSink) Begin(m Meta) error {
	c.cols = m.Columns
	c.rec = make([]string, len(m.Columns))
	for i, col := range m.Columns {
		c.rec[i] = col.Name
	}
	return c.w.Write(c.rec)
}

func (c *csvSink) Row(vals []any) error {
	for i, v := range vals {
		c.rec[i] = text(v)
	}
	if err := c.w.Write(c.rec); err != nil {
		return err
	}
	// Flush now and then so a large export reaches the client as it is
	// made rather than all at the end.
	if c.n++; c.n%256 == 0 {
		c.w.Flush()
		return c.w.Error()
	}
	return nil
}

func (c *csvSink) End(totals map[string]int64) error {
	for i, col := range c.cols {
		c.rec[i] = ""
		if col.Sum {
			c.rec[i] = strconv.FormatInt(totals[col.Name], 10)
		}
	}
	if len(c.rec) > 0 && !c.cols[0].Sum {
		c.rec[0] = "total"
	}
	if err := c.w.Write(c.rec); err != nil {
		return err
	}
	c.w.Flush()
	return c.w.Error()
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return cellSafe(x)
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return fmt.Sprint(v)
}

// cellSafe defuses text a spreadsheet would run as a formula (a leading
// =, +, -, @, tab or carriage return: CSV injection) by prefixing an
// apostrophe. Names, alert summaries and references come from operators and
// meters, so they are not trusted; numbers are written as int64 and never
// touched.
func cellSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// jsonSink writes {"report":...,"title":...,"params":{...},"columns":[...],
// "rows":[{col:value,...},...],"totals":{...}}, each row an object with the
// columns in order.
type jsonSink struct {
	w    *bufio.Writer
	cols []Column
	keys [][]byte
	n    int
}

func (j *jsonSink) Begin(m Meta) error {
	j.cols = m.Columns
	for _, c := range m.Columns {
		k, _ := json.Marshal(c.Name)
		j.keys = append(j.keys, k)
	}
	head, err := json.Marshal(m)
	if err != nil {
		return err
	}
	// The header is the Meta object left open: its fields, then rows.
	j.w.Write(head[:len(head)-1])
	_, err = j.w.WriteString(`,"rows":[`)
	return err
}

func (j *jsonSink) Row(vals []any) error {
	if j.n > 0 {
		j.w.WriteByte(',')
	}
	j.n++
	j.w.WriteString("\n{")
	for i, v := range vals {
		if i > 0 {
			j.w.WriteByte(',')
		}
		j.w.Write(j.keys[i])
		j.w.WriteByte(':')
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		j.w.Write(b)
	}
	if err := j.w.WriteByte('}'); err != nil {
		return err
	}
	if j.n%256 == 0 {
		return j.w.Flush()
	}
	return nil
}

func (j *jsonSink) End(totals map[string]int64) error {
	b, err := json.Marshal(totals)
	if err != nil {
		return err
	}
	j.w.WriteString("\n],\"totals\":")
	j.w.Write(b)
	j.w.WriteString("}\n")
	return j.w.Flush()
}

// Document is a whole report held in memory, for the JSON API route.
type Document struct {
	Meta
	Rows   []map[string]any `json:"rows"`
	Totals map[string]int64 `json:"totals"`
}

// MaxRows bounds a buffered Document; larger reports are streamed through
// the export handler or the CLI.
const MaxRows = 20000

type docSink struct{ d *Document }

func (s *docSink) Begin(m Meta) error { s.d.Meta, s.d.Rows = m, []map[string]any{}; return nil }
func (s *docSink) Row(vals []any) error {
	if len(s.d.Rows) >= MaxRows {
		return fmt.Errorf("%w: more than %d rows; narrow the range or stream the export", ErrTooLarge, MaxRows)
	}
	r := make(map[string]any, len(vals))
	for i, v := range vals {
		r[s.d.Columns[i].Name] = v
	}
	s.d.Rows = append(s.d.Rows, r)
	return nil
}
func (s *docSink) End(t map[string]int64) error { s.d.Totals = t; return nil }

func jsonEncode(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }
