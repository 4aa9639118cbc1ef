package server

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

type schemaInner struct {
	A int    `json:"a"`
	B string `json:"b,omitempty"`
}

type schemaHidden struct {
	C bool `json:"c"`
}

type schemaNamed struct {
	D int `json:"d"`
}

type schemaOuter struct {
	ID int `json:"id"`
	schemaInner
	*schemaHidden
	Named  schemaNamed `json:"named"`
	Tagged schemaNamed
	E      string `json:"e,omitempty"`
	F      int    `json:"-"`
}

type schemaEmbedsNamed struct {
	schemaNamed `json:"inner"`
	G           int `json:"g"`
}

// The schema of a struct has the properties encoding/json writes for it:
// an embedded struct without a JSON name is flattened into its parent, one
// with a name stays a nested object, and "-" fields are left out.
func TestSchemaFollowsEncodingJSON(t *testing.T) {
	for _, v := range []any{
		schemaOuter{schemaInner: schemaInner{B: "b"}, schemaHidden: &schemaHidden{}, E: "e"},
		schemaEmbedsNamed{},
	} {
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]any
		if err := json.Unmarshal(js, &fields); err != nil {
			t.Fatal(err)
		}
		var want []string
		for k := range fields {
			want = append(want, k)
		}
		slices.Sort(want)

		g := &schemaGen{defs: map[string]any{}}
		typ := reflect.TypeOf(v)
		g.schema(typ)
		def := g.defs[schemaName(typ)].(map[string]any)
		var got []string
		for k := range def["properties"].(map[string]any) {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%T: schema properties %v, encoding/json writes %v", v, got, want)
		}
	}
	// Required are the fields without omitempty, promoted ones included.
	g := &schemaGen{defs: map[string]any{}}
	typ := reflect.TypeFor[schemaOuter]()
	g.schema(typ)
	req := g.defs[schemaName(typ)].(map[string]any)["required"].([]string)
	if want := []string{"Tagged", "a", "c", "id", "named"}; !slices.Equal(req, want) {
		t.Errorf("required %v, want %v", req, want)
	}
}
