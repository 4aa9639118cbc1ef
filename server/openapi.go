package server

import (
	"encoding"
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The OpenAPI 3 document is generated from the route table and the Go types
// of the bodies, so it describes exactly what the server does; a test walks
// it against the live routes.

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.OpenAPI())
}

// OpenAPI returns the API description.
func (s *Server) OpenAPI() map[string]any {
	g := &schemaGen{defs: map[string]any{}}
	errRef := g.schema(reflect.TypeFor[ErrorBody]())
	paths := map[string]map[string]any{}
	for _, rt := range s.table {
		op := map[string]any{
			"summary":     rt.Summary,
			"tags":        []string{rt.Tag},
			"operationId": operationID(rt),
		}
		if rt.Roles == nil {
			op["security"] = []any{}
		} else {
			op["x-roles"] = rt.Roles
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, h := range rt.Headers {
			params = append(params, map[string]any{"name": h, "in": "header", "required": true,
				"description": "client-chosen key, at most 128 printable characters: a retry with the same key and body returns the same result",
				"schema":      map[string]any{"type": "string", "maxLength": 128}})
		}
		if rt.Method == "GET" {
			for _, q := range []string{"q", "limit", "from"} {
				if strings.Contains(rt.Summary, q+"=") {
					params = append(params, map[string]any{"name": q, "in": "query", "schema": map[string]any{"type": "string"}})
				}
			}
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.Request != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(rt.Request))}}}
		}
		status := rt.Status
		if status == 0 {
			status = http.StatusOK
		}
		resp := map[string]any{"description": http.StatusText(status)}
		if rt.Response != nil {
			resp["content"] = map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(rt.Response))}}
		}
		errResp := func(code int) map[string]any {
			return map[string]any{"description": http.StatusText(code), "content": map[string]any{"application/json": map[string]any{"schema": errRef}}}
		}
		responses := map[string]any{itoa(status): resp, "400": errResp(400), "422": errResp(422), "500": errResp(500)}
		if rt.Roles != nil {
			responses["401"], responses["403"] = errResp(401), errResp(403)
		}
		if strings.Contains(rt.Path, "{") {
			responses["404"] = errResp(404)
		}
		if rt.Method != "GET" {
			responses["409"] = errResp(409)
		}
		op["responses"] = responses
		p := "/api/v1" + rt.Path
		if paths[p] == nil {
			paths[p] = map[string]any{}
		}
		paths[p][strings.ToLower(rt.Method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "Sluice head-end API",
			"version":     "1",
			"description": "Vending, registry, audit and telemetry API of the Sluice prepaid water-metering head-end. Authenticate with the session cookie from POST /auth/login (console; writes also need the X-Sluice-Console header) or with Authorization: Bearer <API key>. Every route lists the roles allowed in x-roles. Errors are {\"error\":{\"code\",\"message\",\"field\"}}.",
		},
		"servers": []any{map[string]any{"url": "/"}},
		"paths":   paths,
		"components": map[string]any{"schemas": g.defs, "securitySchemes": map[string]any{
			"session": map[string]any{"type": "apiKey", "in": "cookie", "name": sessionCookie},
			"apiKey":  map[string]any{"type": "http", "scheme": "bearer"},
		}},
		"security": []any{map[string]any{"session": []any{}}, map[string]any{"apiKey": []any{}}},
	}
}

func operationID(rt route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, part := range strings.FieldsFunc(rt.Path, func(r rune) bool { return r == '/' || r == '-' || r == '{' || r == '}' || r == '_' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// schemaGen turns Go types into OpenAPI schemas, naming structs.
type schemaGen struct {
	defs map[string]any
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	rawType       = reflect.TypeFor[json.RawMessage]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
)

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{}
	case t.Kind() != reflect.Pointer && t.Implements(jsonMarshaler), reflect.PointerTo(t).Implements(jsonMarshaler) && t.Kind() == reflect.Struct:
		return map[string]any{"type": "object", "description": "see the documentation of " + t.String()}
	case t.Implements(textMarshaler), t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(textMarshaler):
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		name := schemaName(t)
		ref := map[string]any{"$ref": "#/components/schemas/" + name}
		if _, ok := g.defs[name]; ok {
			return ref
		}
		g.defs[name] = map[string]any{} // breaks recursion
		props := map[string]any{}
		var required []string
		// VisibleFields lists an embedded struct's fields after it, as
		// encoding/json promotes them: an embedded struct without a JSON
		// name is flattened into its parent, so the schema skips the
		// struct itself and takes its fields.
		for _, f := range reflect.VisibleFields(t) {
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if flattened(f, name) || insideNamed(t, f) {
				continue
			}
			// An embedded struct of an unexported type counts: encoding/json
			// writes it when it has a name.
			if !f.IsExported() && !(f.Anonymous && structType(f.Type)) {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = g.schema(f.Type)
			if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
				required = append(required, name)
			}
		}
		sort.Strings(required)
		def := map[string]any{"type": "object", "properties": props}
		if required != nil {
			def["required"] = required
		}
		g.defs[name] = def
		return ref
	}
	return map[string]any{}
}

// flattened reports an embedded struct that encoding/json flattens: one
// without a JSON name of its own.
func flattened(f reflect.StructField, jsonName string) bool {
	return f.Anonymous && jsonName == "" && structType(f.Type)
}

func structType(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

// insideNamed reports a field promoted from an embedded struct that has a
// JSON name, which encoding/json keeps as one nested object.
func insideNamed(t reflect.Type, f reflect.StructField) bool {
	for k := 1; k < len(f.Index); k++ {
		outer := t.FieldByIndex(f.Index[:k])
		name, _, _ := strings.Cut(outer.Tag.Get("json"), ",")
		if !flattened(outer, name) {
			return true
		}
	}
	return false
}

func schemaName(t reflect.Type) string {
	pkg := t.PkgPath()
	if i := strings.LastIndex(pkg, "/"); i >= 0 {
		pkg = pkg[i+1:]
	}
	if pkg == "server" || pkg == "" {
		return t.Name()
	}
	return strings.ToUpper(pkg[:1]) + pkg[1:] + t.Name()
}
