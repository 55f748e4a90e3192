package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// The OpenAPI document is a contract the tests hold the service to: every
// route is in it and every path in it is a route, and every response the
// test suite sees through testApp is checked against it by the small JSON
// Schema checker below (the subset of keywords the document uses).

var (
	openAPIOnce sync.Once
	openAPIDoc  map[string]any
	openAPIErr  error
)

func loadOpenAPI(t testing.TB) map[string]any {
	t.Helper()
	openAPIOnce.Do(func() {
		dec := json.NewDecoder(bytes.NewReader(openAPIDocument))
		dec.UseNumber()
		openAPIErr = dec.Decode(&openAPIDoc)
	})
	if openAPIErr != nil {
		t.Fatalf("openapi.json: %v", openAPIErr)
	}
	return openAPIDoc
}

// routePath maps a mux pattern's path to the document's: {$} marks the
// trailing-slash alias of the path without it.
func routePath(path string) string {
	if base, ok := strings.CutSuffix(path, "/{$}"); ok {
		return base
	}
	return path
}

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	paths := doc["paths"].(map[string]any)
	registered := map[string]bool{}
	s := &server{}
	for _, rt := range append(s.routes(0), s.managementRoutes()...) {
		method, path, _ := strings.Cut(rt.pattern, " ")
		key := strings.ToLower(method) + " " + routePath(path)
		registered[key] = true
		item, ok := paths[routePath(path)].(map[string]any)
		if !ok || item[strings.ToLower(method)] == nil {
			t.Errorf("route %s is not in openapi.json", rt.pattern)
		}
	}
	for path, item := range paths {
		for method := range item.(map[string]any) {
			if method != "parameters" && !registered[method+" "+path] {
				t.Errorf("openapi.json describes %s %s, which no route serves", strings.ToUpper(method), path)
			}
		}
	}
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi: %v", doc["openapi"])
	}
	// Every operation has an id, a summary, responses with a description.
	for path, item := range paths {
		for method, op := range item.(map[string]any) {
			if method == "parameters" {
				continue
			}
			o := op.(map[string]any)
			if o["operationId"] == nil || o["summary"] == nil {
				t.Errorf("%s %s: no operationId or summary", method, path)
			}
			for status, r := range o["responses"].(map[string]any) {
				if resolveRef(doc, r)["description"] == nil {
					t.Errorf("%s %s %s: no description", method, path, status)
				}
			}
		}
	}
}

func TestOpenAPIAndDocsAreServed(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	rec := app.do("GET", "/openapi.json", "", "Authorization", "")
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), openAPIDocument) {
		t.Errorf("/openapi.json: %d", rec.Code)
	}
	rec = app.do("GET", "/docs", "", "Authorization", "")
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, `fetch("/openapi.json")`) || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Errorf("/docs: %d, or it reaches beyond this origin", rec.Code)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("/docs CSP: %q", csp)
	}
}

// checkContract checks one response against the document.
func checkContract(t testing.TB, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	if req.Method == http.MethodOptions && req.Header.Get("Access-Control-Request-Method") != "" {
		return // a CORS preflight: the protocol's, on every path; openapi.json's info describes it
	}
	doc := loadOpenAPI(t)
	where := req.Method + " " + req.URL.Path + " " + fmt.Sprint(rec.Code)
	path, item := findPathItem(doc, req.URL.Path)
	var response map[string]any
	if item != nil {
		method := strings.ToLower(req.Method)
		if method == "head" {
			method = "get"
		}
		if op, ok := item[method].(map[string]any); ok {
			responses := op["responses"].(map[string]any)
			r, ok := responses[fmt.Sprint(rec.Code)]
			if !ok {
				r = responses["default"]
			}
			if r == nil {
				t.Errorf("contract: %s: status not in openapi.json for %s", where, path)
				return
			}
			response = resolveRef(doc, r)
		}
	}
	if response == nil { // an unknown route or method: a problem, as the default response says
		if rec.Code < 400 {
			t.Errorf("contract: %s: a success on a path and method openapi.json does not have", where)
			return
		}
		response = resolveRef(doc, map[string]any{"$ref": "#/components/responses/Error"})
	}
	content, _ := response["content"].(map[string]any)
	if len(content) == 0 {
		if rec.Body.Len() != 0 {
			t.Errorf("contract: %s: a body where openapi.json has none: %q", where, rec.Body)
		}
		return
	}
	contentType := rec.Header().Get("Content-Type")
	media, ok := content[contentType].(map[string]any)
	if !ok {
		t.Errorf("contract: %s: Content-Type %q not in %v", where, contentType, slices.Collect(maps.Keys(content)))
		return
	}
	if base, _, _ := mime.ParseMediaType(contentType); !strings.HasSuffix(base, "json") {
		return
	}
	var body any
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Errorf("contract: %s: body is not JSON: %v", where, err)
		return
	}
	for _, problem := range validateSchema(doc, body, media["schema"], "body") {
		t.Errorf("contract: %s: %s", where, problem)
	}
}

// findPathItem finds the document's path template that matches path.
func findPathItem(doc map[string]any, path string) (string, map[string]any) {
	if path != "/" {
		path = strings.TrimSuffix(path, "/") // the {$} alias
	}
	for template, item := range doc["paths"].(map[string]any) {
		pattern := "^" + regexp.MustCompile(`\\\{[^/]+\\\}`).ReplaceAllString(regexp.QuoteMeta(template), `[^/]+`) + "$"
		if regexp.MustCompile(pattern).MatchString(path) {
			return template, item.(map[string]any)
		}
	}
	return "", nil
}

// resolveRef follows $ref within the document.
func resolveRef(doc map[string]any, v any) map[string]any {
	m, _ := v.(map[string]any)
	for m != nil && m["$ref"] != nil {
		var target any = doc
		for _, part := range strings.Split(strings.TrimPrefix(m["$ref"].(string), "#/"), "/") {
			target = target.(map[string]any)[part]
		}
		m, _ = target.(map[string]any)
	}
	return m
}

// validateSchema checks v against schema and returns every problem found.
// It knows the keywords openapi.json uses: $ref, type (one or a list),
// properties, required, additionalProperties: false, minProperties,
// items, enum, const, minimum, maximum, minLength, maxLength, pattern and
// the formats date-time and email. Annotations (description, example,
// default) are ignored; any other keyword is reported, so the document
// cannot outgrow the checker unnoticed.
func validateSchema(doc map[string]any, v any, schemaValue any, at string) []string {
	schema := resolveRef(doc, schemaValue)
	if schema == nil {
		return []string{at + ": no schema"}
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, at+": "+fmt.Sprintf(format, args...)) }
	if t, ok := schema["type"]; ok {
		var types []string
		switch t := t.(type) {
		case string:
			types = []string{t}
		case []any:
			for _, x := range t {
				types = append(types, x.(string))
			}
		}
		if !slices.ContainsFunc(types, func(t string) bool { return jsonTypeIs(v, t) }) {
			fail("%v is not of type %v", v, types)
			return problems
		}
	}
	for keyword, want := range schema {
		switch keyword {
		case "type", "description", "example", "examples", "default", "$ref":
		case "enum":
			if !slices.ContainsFunc(want.([]any), func(x any) bool { return fmt.Sprint(x) == fmt.Sprint(v) }) {
				fail("%v is not one of %v", v, want)
			}
		case "const":
			if fmt.Sprint(want) != fmt.Sprint(v) {
				fail("%v is not %v", v, want)
			}
		case "minimum", "maximum":
			n, ok := v.(json.Number)
			if !ok {
				continue
			}
			got, _ := n.Float64()
			bound, _ := want.(json.Number).Float64()
			if keyword == "minimum" && got < bound || keyword == "maximum" && got > bound {
				fail("%v is past the %s %v", v, keyword, bound)
			}
		case "minLength", "maxLength":
			s, ok := v.(string)
			if !ok {
				continue
			}
			bound, _ := want.(json.Number).Int64()
			if n := int64(utf8.RuneCountInString(s)); keyword == "minLength" && n < bound || keyword == "maxLength" && n > bound {
				fail("length %d is past the %s %d", n, keyword, bound)
			}
		case "pattern":
			if s, ok := v.(string); ok && !regexp.MustCompile(want.(string)).MatchString(s) {
				fail("%q does not match %s", s, want)
			}
		case "format":
			s, ok := v.(string)
			if !ok {
				continue
			}
			switch want {
			case "date-time":
				if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
					fail("%q is not a date-time", s)
				}
			case "email":
				if !strings.Contains(s, "@") {
					fail("%q is not an email", s)
				}
			}
		case "properties", "required", "additionalProperties", "minProperties":
			obj, ok := v.(map[string]any)
			if !ok {
				continue
			}
			props, _ := schema["properties"].(map[string]any)
			switch keyword {
			case "properties":
				for name, sub := range props {
					if pv, present := obj[name]; present {
						problems = append(problems, validateSchema(doc, pv, sub, at+"."+name)...)
					}
				}
			case "required":
				for _, name := range want.([]any) {
					if _, present := obj[name.(string)]; !present {
						fail("required %s is missing", name)
					}
				}
			case "additionalProperties":
				if want == false {
					for name := range obj {
						if _, known := props[name]; !known {
							fail("unexpected property %s", name)
						}
					}
				}
			case "minProperties":
				if n, _ := want.(json.Number).Int64(); int64(len(obj)) < n {
					fail("fewer than %d properties", n)
				}
			}
		case "items":
			if arr, ok := v.([]any); ok {
				for i, item := range arr {
					problems = append(problems, validateSchema(doc, item, want, fmt.Sprintf("%s[%d]", at, i))...)
				}
			}
		default:
			fail("the checker does not know the keyword %q", keyword)
		}
	}
	return problems
}

// jsonTypeIs reports whether a decoded JSON value is of a JSON Schema type.
func jsonTypeIs(v any, t string) bool {
	switch t {
	case "null":
		return v == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

func TestSchemaCheckerCatchesMistakes(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	decode := func(s string) any {
		var v any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		dec.Decode(&v)
		return v
	}
	user := map[string]any{"$ref": "#/components/schemas/User"}
	good := `{"id":1,"username":"alice","email":"a@b.co","full_name":null,"role":"user","is_active":true,"created_at":"2026-11-30T09:24:34.123456Z","updated_at":"2026-11-30T09:24:34.123456Z"}`
	if problems := validateSchema(doc, decode(good), user, "user"); len(problems) > 0 {
		t.Errorf("a good user: %v", problems)
	}
	for _, bad := range []string{
		strings.Replace(good, `"id":1`, `"id":"1"`, 1),
		strings.Replace(good, `"role":"user"`, `"role":"root"`, 1),
		strings.Replace(good, `"full_name":null`, `"full_name":7`, 1),
		strings.Replace(good, `.123456Z"}`, `Z"}`, 1),
		strings.Replace(good, `"is_active":true,`, ``, 1),
		strings.Replace(good, `}`, `,"password_hash":"x"}`, 1),
	} {
		if problems := validateSchema(doc, decode(bad), user, "user"); len(problems) == 0 {
			t.Errorf("accepted %s", bad)
		}
	}
}
