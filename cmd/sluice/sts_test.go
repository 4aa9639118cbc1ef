package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

const stsTablesFile = "../../sts/testdata/sample-sta-tables.json"

// stsCLI runs `sluice sts ARGS` in-process with stdin and returns the exit
// status and the one JSON object written on stdout.
func stsCLI(t *testing.T, stdin string, args ...string) (int, map[string]any) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), stdio{in: strings.NewReader(stdin), out: &out, err: &errb,
		getenv: func(string) string { return "" }}, append([]string{"sts"}, args...))
	var m map[string]any
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("sts %v: stdout is not one JSON object: %v (%q, stderr %q)", args, err, out.String(), errb.String())
	}
	if dec.More() {
		t.Fatalf("sts %v: more than one JSON value on stdout", args)
	}
	return code, m
}

func TestSTSDecoderKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// stsa-cts 531-1-0-02 CTSA01
		{`{"dkga":"02","vending_key":"abababababababab","kt":2,"sgc":"123456","ti":"01","krn":1,"pan":"600727000000000009"}`, "e653341f9d5bf36f"},
		// stsa-cts 531-1-0-04 CTSA01
		{`{"dkga":"04","vending_key":"abababababababab949494949494949401234567","kt":2,"sgc":"123457","ti":"01","krn":1,"pan":"600727000000000009","base_date":1993,"ea":"11"}`, "f94b6ed353c3bfdb113e2d3a7ea3c41d"},
		// the same with the TI as a number
		{`{"dkga":"04","vending_key":"abababababababab949494949494949401234567","kt":2,"sgc":123457,"ti":2,"krn":1,"pan":"600727000000000009","base_date":1993,"ea":"11"}`, "b208834372ef892ef6e04c28593090d4"},
	} {
		code, m := stsCLI(t, c.in, "decoder-key")
		if code != 0 || m["decoder_key"] != c.want {
			t.Errorf("decoder-key %s: exit %d, %v; want %s", c.in, code, m, c.want)
		}
	}
}

func TestSTSEncodeVectors(t *testing.T) {
	for _, c := range []struct {
		in    string
		flags []string
		want  []string
		tid   float64
	}{
		{ // IEC worked example, sample STA tables
			`{"decoder_key":"0ABC12DEF3456789","ea":"07","class":0,"subclass":0,"base_date":1993,"issued":"1996-03-25T13:55:00Z","rnd":11,"tenths":256}`,
			[]string{"--sta-tables", stsTablesFile}, []string{"51043465443420856213"}, 1698595,
		},
		{ // stsa-cts 531-1-0-04 CTSA01, water
			`{"decoder_key":"f94b6ed353c3bfdb113e2d3a7ea3c41d","ea":"11","class":0,"subclass":1,"base_date":1993,"issued":"2004-03-01T13:05:00Z","rnd":5,"tenths":1}`,
			nil, []string{"47186281207955155808"}, 5871665,
		},
		{ // stsa-cts 531-1-0-04 CTSA05, 4-token key change
			`{"decoder_key":"f94b6ed353c3bfdb113e2d3a7ea3c41d","ea":"11","class":2,"subclass":3,"base_date":1993,
			  "key_change":{"new_key":"b208834372ef892ef6e04c28593090d4","ken":255,"krn":1,"ro":0,"kt":2,"ti":2,"sgc":"123457"}}`,
			nil, []string{"34812744915211133004", "46903925208523674737", "71464563847088610152", "67904239402617643990"}, 0,
		},
	} {
		code, m := stsCLI(t, c.in, append([]string{"encode"}, c.flags...)...)
		toks, _ := m["tokens"].([]any)
		if code != 0 || len(toks) != len(c.want) || m["tid"] != c.tid {
			t.Fatalf("encode %s: exit %d, %v", c.in, code, m)
		}
		for i := range toks {
			if toks[i] != c.want[i] {
				t.Errorf("token %d = %v, want %s", i, toks[i], c.want[i])
			}
		}
	}
}

func TestSTSDecode(t *testing.T) {
	code, m := stsCLI(t, `{"decoder_key":"f94b6ed353c3bfdb113e2d3a7ea3c41d","ea":"11","base_date":1993,"token":"47186281207955155808"}`, "decode")
	want := map[string]any{"class": 0.0, "subclass": 1.0, "rnd": 5.0, "tid": 5871665.0, "issued": "2004-03-01T13:05:00Z",
		"amount_field": "0001", "tenths": 1.0, "crc_ok": true}
	if code != 0 {
		t.Fatalf("decode: exit %d, %v", code, m)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("decode %s = %v, want %v", k, m[k], v)
		}
	}
	code, m = stsCLI(t, `{"decoder_key":"0ABC12DEF3456789","ea":"07","base_date":1993,"token":"51043465443420856213"}`, "decode", "--sta-tables", stsTablesFile)
	if code != 0 || m["crc_ok"] != true || m["amount_field"] != "0100" || m["tenths"] != 256.0 || m["rnd"] != 11.0 || m["issued"] != "1996-03-25T13:55:00Z" {
		t.Errorf("decode EA07: exit %d, %v", code, m)
	}
	// Under another key the token is well formed but fails its CRC: an
	// answer, not an error.
	code, m = stsCLI(t, `{"decoder_key":"00000000000000000000000000000000","ea":"11","base_date":1993,"token":"47186281207955155808"}`, "decode")
	if code != 0 || m["crc_ok"] != false {
		t.Errorf("decode under a wrong key: exit %d, %v", code, m)
	}
	// A key change section.
	code, m = stsCLI(t, `{"decoder_key":"f94b6ed353c3bfdb113e2d3a7ea3c41d","ea":"11","base_date":1993,"token":"34812744915211133004"}`, "decode")
	if code != 0 || m["class"] != 2.0 || m["subclass"] != 3.0 || m["section"] != 1.0 || m["crc_ok"] != true {
		t.Errorf("decode key change section: exit %d, %v", code, m)
	}
}

// TestSTSPurchaseWithKeyChange: the key change set comes first, then the
// credit token under the new key, on the next base date after a rollover.
func TestSTSPurchaseWithKeyChange(t *testing.T) {
	code, m := stsCLI(t, `{"decoder_key":"f94b6ed353c3bfdb113e2d3a7ea3c41d","ea":"11","class":0,"subclass":1,"base_date":1993,
		"issued":"2024-12-01T08:00:00Z","rnd":3,"tenths":60,
		"key_change":{"new_key":"b208834372ef892ef6e04c28593090d4","ken":255,"krn":2,"ro":1,"kt":2,"ti":1,"sgc":"123457"}}`, "encode")
	toks, _ := m["tokens"].([]any)
	if code != 0 || len(toks) != 5 {
		t.Fatalf("encode: exit %d, %v", code, m)
	}
	code, d := stsCLI(t, `{"decoder_key":"b208834372ef892ef6e04c28593090d4","ea":"11","base_date":2014,"token":"`+toks[4].(string)+`"}`, "decode")
	if code != 0 || d["crc_ok"] != true || d["tenths"] != 60.0 || d["issued"] != "2024-12-01T08:00:00Z" || d["tid"] != m["tid"] {
		t.Errorf("credit after key change: exit %d, %v", code, d)
	}
}

func TestSTSTestToken(t *testing.T) {
	code, m := stsCLI(t, `{"decoder_key":"f94b6ed353c3bfdb113e2d3a7ea3c41d","ea":"11","class":1,"subclass":0,"control":31,"mfr":42}`, "encode")
	toks, _ := m["tokens"].([]any)
	if code != 0 || len(toks) != 1 {
		t.Fatalf("encode class 1: exit %d, %v", code, m)
	}
	// Not encrypted: any key decodes it.
	code, d := stsCLI(t, `{"decoder_key":"00000000000000000000000000000000","ea":"11","base_date":2014,"token":"`+toks[0].(string)+`"}`, "decode")
	if code != 0 || d["class"] != 1.0 || d["control"] != 31.0 || d["mfr"] != 42.0 || d["crc_ok"] != true {
		t.Errorf("decode class 1: exit %d, %v", code, d)
	}
}

// TestSTSErrors: bad input exits 1 with {"error": ...} naming the field.
func TestSTSErrors(t *testing.T) {
	const dk04 = `"dkga":"04","vending_key":"abababababababab949494949494949401234567","kt":2,"sgc":"123457","ti":"01","krn":1,"pan":"600727000000000009","base_date":1993,"ea":"11"`
	const enc = `"decoder_key":"f94b6ed353c3bfdb113e2d3a7ea3c41d","ea":"11","class":0,"subclass":1,"base_date":1993,"issued":"2004-03-01T13:05:00Z","rnd":5`
	for _, c := range []struct {
		args  []string
		in    string
		field string
	}{
		{[]string{"decoder-key"}, `not json`, "request"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"dkga":"03"}`, "dkga"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"vending_key":"abab"}`, "vending_key"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"vending_key":"zz"}`, "vending_key"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"kt":4}`, "kt"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"sgc":"12345x"}`, "sgc"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"ti":"123"}`, "ti"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"krn":0}`, "krn"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"krn":"1"}`, "krn"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"sgc":-123456}`, "sgc"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"ti":1.5}`, "ti"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"pan":"600727000000000008"}`, "pan"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"base_date":2000}`, "base_date"},
		{[]string{"decoder-key"}, `{` + dk04 + `,"ea":"09"}`, "ea"},
		{[]string{"encode"}, `{` + enc + `}`, "tenths"},
		{[]string{"encode"}, `{` + enc + `,"tenths":18201625}`, "tenths"},
		{[]string{"encode"}, `{` + enc + `,"tenths":-1}`, "tenths"},
		{[]string{"encode"}, `{` + enc + `,"tenths":1,"key_change":{"ken":"x"}}`, "key_change.ken"},
		{[]string{"encode"}, `{` + enc + `,"tenths":1,"rnd":16}`, "rnd"},
		{[]string{"encode"}, `{` + enc + `,"tenths":1,"subclass":8}`, "subclass"},
		{[]string{"encode"}, `{` + enc + `,"tenths":1,"class":3}`, "class"},
		{[]string{"encode"}, `{` + enc + `,"tenths":1,"issued":"yesterday"}`, "issued"},
		{[]string{"encode"}, `{` + enc + `,"tenths":1,"issued":"1990-01-01T00:00:00Z"}`, "issued"},
		{[]string{"encode"}, `{` + enc + `,"tenths":1,"decoder_key":"f94b"}`, "decoder_key"},
		{[]string{"encode"}, `{` + enc + `,"tenths":1,"ea":"07"}`, "decoder_key"},
		{[]string{"encode"}, `{` + enc + `,"tenths":1,"ea":"07","decoder_key":"0ABC12DEF3456789"}`, "--sta-tables"},
		{[]string{"encode"}, `{` + enc + `,"class":2,"subclass":0}`, "value"},
		{[]string{"encode"}, `{` + enc + `,"class":2,"subclass":0,"value":65536}`, "value"},
		{[]string{"encode"}, `{` + enc + `,"class":2,"subclass":4,"value":1}`, "subclass"},
		{[]string{"encode"}, `{` + enc + `,"class":2,"key_change":{"new_key":"00","ken":1,"krn":1,"kt":2,"ti":1,"sgc":"123457"}}`, "key_change.new_key"},
		{[]string{"encode"}, `{` + enc + `,"class":2,"key_change":{"new_key":"b208834372ef892ef6e04c28593090d4","ken":1,"krn":1,"kt":2,"ti":1}}`, "key_change.sgc"},
		{[]string{"encode"}, `{` + enc + `,"class":2,"key_change":{"new_key":"b208834372ef892ef6e04c28593090d4","ken":256,"krn":1,"kt":2,"ti":1,"sgc":"1"}}`, "key_change.ken"},
		{[]string{"decode"}, `{"decoder_key":"f94b6ed353c3bfdb113e2d3a7ea3c41d","ea":"11","base_date":1993,"token":"4718628120795515580"}`, "token"},
		{[]string{"decode"}, `{"decoder_key":"f94b6ed353c3bfdb113e2d3a7ea3c41d","ea":"11","base_date":1993,"token":"99999999999999999999"}`, "token"},
		{[]string{"decode"}, `{"decoder_key":"f94b6ed353c3bfdb113e2d3a7ea3c41d","ea":"11","token":"47186281207955155808"}`, "base_date"},
		{[]string{"decode", "--sta-tables", "/nonexistent.json"}, `{"decoder_key":"0ABC12DEF3456789","ea":"07","base_date":1993,"token":"51043465443420856213"}`, "--sta-tables"},
	} {
		code, m := stsCLI(t, c.in, c.args...)
		msg, _ := m["error"].(string)
		if code != 1 || len(m) != 1 || !strings.HasPrefix(msg, c.field+":") {
			t.Errorf("%v %s: exit %d, %v; want exit 1 and an error naming %s", c.args, c.in, code, m, c.field)
		}
	}
}
