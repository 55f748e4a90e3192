package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// The OpenAPI documents are a contract the tests hold the service to:
// every route of a listener is in its document and every path in it is a
// route, and every response the test suite sees through testApp is checked
// against it by the small JSON Schema checker below (the subset of
// keywords the documents use).

// The listeners a response can come from, each described by a document of
// its own: a generated client takes one server per document.
const (
	publicListener     = "public"
	managementListener = "management"
)

// listenerDocuments are the documents, by listener, as the binary embeds
// and serves them.
var listenerDocuments = map[string]struct {
	name string
	body []byte
}{
	publicListener:     {"openapi.json", openAPIDocument},
	managementListener: {"openapi-management.json", managementOpenAPIDocument},
}

var openAPI struct {
	once sync.Once
	docs map[string]map[string]any
	err  error
}

// loadOpenAPI returns the document that describes listener, decoded.
func loadOpenAPI(t testing.TB, listener string) map[string]any {
	t.Helper()
	openAPI.once.Do(func() {
		openAPI.docs = map[string]map[string]any{}
		for l, d := range listenerDocuments {
			var doc map[string]any
			dec := json.NewDecoder(bytes.NewReader(d.body))
			dec.UseNumber()
			if err := dec.Decode(&doc); err != nil {
				openAPI.err = fmt.Errorf("%s: %w", d.name, err)
				return
			}
			openAPI.docs[l] = doc
		}
	})
	if openAPI.err != nil {
		t.Fatal(openAPI.err)
	}
	doc, ok := openAPI.docs[listener]
	if !ok {
		t.Fatalf("no document for the %q listener", listener)
	}
	return doc
}

// routePath maps a mux pattern's path to the document's: {$} marks a
// path also served with its trailing slash, which the document lists
// once, without it.
func routePath(path string) string {
	if base, ok := strings.CutSuffix(path, "/{$}"); ok {
		return base
	}
	return path
}

// documentedRequest is the method and path the document lists req under:
// HEAD is GET without a body (RFC 9110, 9.3.2), and a trailing slash the
// mux serves ({$}) is the path without it.
func documentedRequest(doc map[string]any, req *http.Request) (method, path string) {
	method, path = req.Method, req.URL.Path
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if base, ok := strings.CutSuffix(path, "/"); ok && base != "" {
		if _, literal := doc["paths"].(map[string]any)[base]; literal {
			path = base
		}
	}
	return method, path
}

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	s := &server{}
	for listener, routes := range map[string][]route{publicListener: s.routes(0), managementListener: s.managementRoutes()} {
		t.Run(listener, func(t *testing.T) { checkDescribesRoutes(t, loadOpenAPI(t, listener), routes) })
	}
}

// checkDescribesRoutes checks one listener's document against its routes:
// each route is an operation and each operation a route, with an id, a
// summary and every status it sends; the document has one server and no
// path with servers of its own, which generated clients would not use.
func checkDescribesRoutes(t *testing.T, doc map[string]any, routes []route) {
	paths := doc["paths"].(map[string]any)
	registered := map[string]bool{}
	if servers, _ := doc["servers"].([]any); len(servers) != 1 {
		t.Errorf("servers: %v, want one: a generated client takes one base URL per document", servers)
	}
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.pattern, " ")
		methods := []string{strings.ToLower(method)} // HEAD is GET's, not listed
		item, ok := paths[routePath(path)].(map[string]any)
		for _, m := range methods {
			registered[m+" "+routePath(path)] = true
			// {id} also takes "me" (pathUser), which the document
			// lists as paths of their own, for typed clients.
			registered[m+" "+strings.Replace(routePath(path), "{id}", "me", 1)] = true
			if !ok || item[m] == nil {
				t.Errorf("route %s (%s) is not in the document", rt.pattern, strings.ToUpper(m))
			}
		}
	}
	for path, item := range paths {
		if item.(map[string]any)["servers"] != nil {
			t.Errorf("%s has servers of its own, which generated clients ignore", path)
		}
		if strings.HasSuffix(path, "/") && path != "/" {
			t.Errorf("the document lists %s: a trailing slash is the same path, listed once", path)
		}
		for method := range item.(map[string]any) {
			if method == "head" {
				t.Errorf("the document lists HEAD %s: HEAD is GET's, listed once (generated clients doubled)", path)
			}
			if isOperation(method) && !registered[method+" "+path] {
				t.Errorf("the document describes %s %s, which no route serves", strings.ToUpper(method), path)
			}
		}
	}
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi: %v", doc["openapi"])
	}
	// Every operation has an id, a summary, responses with a description,
	// and no catch-all: each status it can send is listed.
	for path, item := range paths {
		for method, op := range item.(map[string]any) {
			if !isOperation(method) {
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
				if status == "default" {
					t.Errorf("%s %s: a default response hides which statuses it sends", method, path)
				}
			}
		}
	}
}

// isOperation reports whether a path item's member is an operation.
func isOperation(member string) bool {
	switch member {
	case "get", "head", "post", "put", "patch", "delete", "options", "trace":
		return true
	}
	return false
}

func TestOpenAPIAndDocsAreServed(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	rec := app.do("GET", "/openapi.json", "", "Authorization", "")
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), openAPIDocument) {
		t.Errorf("/openapi.json: %d", rec.Code)
	}
	rec = app.manage("GET", "/openapi.json")
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), managementOpenAPIDocument) {
		t.Errorf("management /openapi.json: %d", rec.Code)
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

// headersNotDeclared are the response headers the document need not
// declare: HTTP's framing and the representation's own metadata.
var headersNotDeclared = []string{"Content-Length", "Content-Type", "Date", "Connection", "Transfer-Encoding"}

// checkContract checks one response from listener against the document:
// its status is one the operation lists, every header it carries is one
// the response declares (and every required one is there), each header's
// value and the body match their schemas. A request that is no operation
// of the document (an unknown path or method) must have been answered
// with the Unmatched problem.
func checkContract(t testing.TB, listener string, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	if req.Method == http.MethodOptions && req.Header.Get("Access-Control-Request-Method") != "" {
		return // a CORS preflight: the protocol's, on every path; openapi.json's info describes it
	}
	doc := loadOpenAPI(t, listener)
	where := listener + " " + req.Method + " " + req.URL.Path + " " + fmt.Sprint(rec.Code)
	response := responseFor(t, doc, listener, req, rec.Code, where)
	if response == nil {
		return
	}
	checkHeaders(t, doc, response, rec.Header(), where)
	if req.Method == http.MethodHead {
		return // the server drops a HEAD answer's body; the recorder keeps it
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

// responseFor finds the response the document gives for status to req on
// listener, reporting when there is none.
func responseFor(t testing.TB, doc map[string]any, listener string, req *http.Request, status int, where string) map[string]any {
	t.Helper()
	var op map[string]any
	method, path := documentedRequest(doc, req)
	if cleanPath(req.URL.Path) == req.URL.Path {
		if _, item := findPathItem(doc, path); item != nil {
			op, _ = item[strings.ToLower(method)].(map[string]any)
		}
	}
	if op == nil { // no operation: the document's answer to anything else
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			t.Errorf("contract: %s: a path and method openapi.json does not have, answered other than 404 or 405", where)
			return nil
		}
		return resolveRef(doc, map[string]any{"$ref": "#/components/responses/Unmatched"})
	}
	r, ok := op["responses"].(map[string]any)[fmt.Sprint(status)]
	if !ok {
		t.Errorf("contract: %s: status not in openapi.json for %s", where, op["operationId"])
		return nil
	}
	return resolveRef(doc, r)
}

// checkHeaders checks a response's headers against the response's
// declared ones.
func checkHeaders(t testing.TB, doc, response map[string]any, got http.Header, where string) {
	t.Helper()
	declared := map[string]map[string]any{} // by canonical name, as http.Header keeps them
	names := map[string]string{}            // the document's spelling
	for name, h := range response["headers"].(map[string]any) {
		declared[http.CanonicalHeaderKey(name)] = resolveRef(doc, h)
		names[http.CanonicalHeaderKey(name)] = name
	}
	for name, values := range got {
		if slices.Contains(headersNotDeclared, name) {
			continue
		}
		h, ok := declared[name]
		if !ok {
			t.Errorf("contract: %s: header %s is not declared in openapi.json", where, name)
			continue
		}
		for _, v := range values {
			for _, problem := range validateSchema(doc, v, h["schema"], "header "+name) {
				t.Errorf("contract: %s: %s", where, problem)
			}
		}
	}
	for name, h := range declared {
		if h["required"] == true && len(got[name]) == 0 {
			t.Errorf("contract: %s: required header %s is missing", where, names[name])
		}
	}
}

// findPathItem finds the document's path template that matches path.
func findPathItem(doc map[string]any, path string) (string, map[string]any) {
	paths := doc["paths"].(map[string]any)
	if item, ok := paths[path].(map[string]any); ok {
		return path, item // a literal path wins over a template (OpenAPI 3.1, 4.8.8)
	}
	for template, item := range paths {
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

// validateSchema checks v, a response's value, against schema and returns
// every problem found. It knows the keywords openapi.json uses: $ref, type
// (one or a list), properties, required, additionalProperties: false,
// minProperties, items, minItems, enum, const, minimum, maximum,
// minLength, maxLength, pattern, the formats date-time and email, and
// writeOnly (a member never answered). Annotations (description, example,
// default, readOnly) are ignored; any other keyword is reported, so the
// document cannot outgrow the checker unnoticed.
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
		case "type", "description", "example", "examples", "default", "$ref", "readOnly", "writeOnly":
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
					pv, present := obj[name]
					if present && resolveRef(doc, sub)["writeOnly"] == true {
						fail("write-only %s in a response", name)
					} else if present {
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
		case "minItems":
			if arr, ok := v.([]any); ok {
				if n, _ := want.(json.Number).Int64(); int64(len(arr)) < n {
					fail("fewer than %d items", n)
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
	doc := loadOpenAPI(t, publicListener)
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
		strings.Replace(good, `}`, `,"password":"x"}`, 1),
	} {
		if problems := validateSchema(doc, decode(bad), user, "user"); len(problems) == 0 {
			t.Errorf("accepted %s", bad)
		}
	}
}

// contractFailures collects what checkContract reports, so a test can
// show that it fails where it should.
type contractFailures struct {
	testing.TB
	failures []string
}

func (c *contractFailures) Helper() {}
func (c *contractFailures) Errorf(format string, args ...any) {
	c.failures = append(c.failures, fmt.Sprintf(format, args...))
}

func TestContractCheckerCatchesMistakes(t *testing.T) {
	t.Parallel()
	user := `{"id":7,"username":"alice","email":"a@b.co","full_name":null,"role":"user","is_active":true,"created_at":"2026-11-30T09:24:34.123456Z","updated_at":"2026-11-30T09:24:34.123456Z"}`
	// answer is a response as the service sends it, changed by change.
	answer := func(status int, body string, change func(http.Header)) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h := rec.Header()
		h.Set("X-Request-ID", "abc")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "application/json")
		h.Set("ETag", `"1"`)
		if change != nil {
			change(h)
		}
		rec.WriteHeader(status)
		rec.WriteString(body)
		return rec
	}
	tests := []struct {
		name     string
		listener string
		method   string
		path     string
		rec      *httptest.ResponseRecorder
		want     string // in a failure; "" for none
	}{
		{"a good answer", publicListener, "GET", "/api/v1/users/7", answer(200, user, nil), ""},
		{"a good HEAD", publicListener, "HEAD", "/api/v1/users/me", answer(200, user, nil), ""},
		{"an undeclared status", publicListener, "GET", "/api/v1/users/7", answer(http.StatusTeapot, user, nil), "status not in openapi.json"},
		{"a status declared for another operation", publicListener, "GET", "/api/v1/users/7", answer(http.StatusPreconditionFailed, user, nil), "status not in openapi.json"},
		{"an undeclared header", publicListener, "GET", "/api/v1/users/7", answer(200, user, func(h http.Header) { h.Set("X-Debug", "1") }), "header X-Debug is not declared"},
		{"a header declared for another status", publicListener, "GET", "/api/v1/users/7", answer(200, user, func(h http.Header) { h.Set("Retry-After", "1") }), "header Retry-After is not declared"},
		{"a required header missing", publicListener, "GET", "/api/v1/users/7", answer(200, user, func(h http.Header) { h.Del("ETag") }), "required header ETag is missing"},
		{"a header of the wrong value", publicListener, "GET", "/api/v1/users/7", answer(200, user, func(h http.Header) { h.Set("Cache-Control", "private") }), "header Cache-Control"},
		{"a success on an unknown path", publicListener, "GET", "/api/v1/nope", answer(200, user, nil), "does not have"},
		{"a success on a path not in canonical form", publicListener, "GET", "/api/v1//users/7", answer(200, user, nil), "does not have"},
		{"a management path on the public listener", publicListener, "GET", "/health/live", answer(200, `{"status":"ok"}`, nil), "does not have"},
		{"a public path on the management listener", managementListener, "GET", "/api/v1/users/7", answer(200, user, nil), "does not have"},
		{"a body that breaks the schema", publicListener, "GET", "/api/v1/users/7", answer(200, `{"id":7}`, nil), "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := &contractFailures{TB: t}
			checkContract(got, tt.listener, httptest.NewRequest(tt.method, tt.path, nil), tt.rec)
			switch {
			case tt.want == "" && len(got.failures) > 0:
				t.Errorf("failed a good answer: %q", got.failures)
			case tt.want != "" && !slices.ContainsFunc(got.failures, func(f string) bool { return strings.Contains(f, tt.want) }):
				t.Errorf("failures %q: none says %q", got.failures, tt.want)
			}
		})
	}
}

// TestHeadIsServedForEveryGet: the mux answers HEAD on every GET route,
// as openapi.json says: the GET's status and headers, checked against the
// document's head operations like every other answer.
func TestHeadIsServedForEveryGet(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	id := strconv.FormatInt(app.adminID, 10)
	serve := map[string]func(method, path string) *httptest.ResponseRecorder{
		publicListener:     func(method, path string) *httptest.ResponseRecorder { return app.do(method, path, "") },
		managementListener: func(method, path string) *httptest.ResponseRecorder { return app.manage(method, path) },
	}
	s := &server{}
	for listener, routes := range map[string][]route{publicListener: s.routes(0), managementListener: s.managementRoutes()} {
		for _, rt := range routes {
			method, path, _ := strings.Cut(rt.pattern, " ")
			if method != http.MethodGet {
				continue
			}
			path = strings.ReplaceAll(routePath(path), "{id}", id)
			get, head := serve[listener](http.MethodGet, path), serve[listener](http.MethodHead, path)
			if head.Code != get.Code || head.Header().Get("Content-Type") != get.Header().Get("Content-Type") ||
				head.Header().Get("ETag") != get.Header().Get("ETag") {
				t.Errorf("%s HEAD %s: %d %v; GET: %d %v", listener, path, head.Code, head.Header(), get.Code, get.Header())
			}
		}
	}
}

// TestTrailingSlashIsServedLikeWithout: /api/v1/users/ lists and creates
// as /api/v1/users does, as the document's path of its own says.
func TestTrailingSlashIsServedLikeWithout(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	rec := app.do("POST", "/api/v1/users/", `{"username":"slash","email":"slash@example.com","password":"rq7-tz4w"}`)
	if rec.Code != http.StatusCreated || rec.Header().Get("Location") != userPath(decodeJSON[userJSON](t, rec).ID) {
		t.Fatalf("POST /api/v1/users/: %d %v", rec.Code, rec.Header())
	}
	if rec := app.do("GET", "/api/v1/users/?q=slash", ""); rec.Code != http.StatusOK || decodeJSON[listJSON](t, rec).Total != 1 {
		t.Errorf("GET /api/v1/users/?q=slash: %d %s", rec.Code, rec.Body)
	}
}

// componentsApart are the components the two documents may hold
// differently, and why.
var componentsApart = map[string]string{
	"responses/Unmatched": "the public listener answers an unmatched /scim/v2 path in SCIM's error shape; the management listener serves no SCIM",
}

// TestDocumentsShareComponents: what the management document takes from
// the public one (headers, problems, health) is the same there, so the
// two cannot drift apart; only componentsApart may differ.
func TestDocumentsShareComponents(t *testing.T) {
	t.Parallel()
	public, management := loadOpenAPI(t, publicListener), loadOpenAPI(t, managementListener)
	for kind, members := range management["components"].(map[string]any) {
		for name, m := range members.(map[string]any) {
			p := public["components"].(map[string]any)[kind].(map[string]any)[name]
			if _, apart := componentsApart[kind+"/"+name]; apart {
				if p == nil {
					t.Errorf("components/%s/%s: missing from openapi.json", kind, name)
				}
				continue
			}
			if !reflect.DeepEqual(m, p) {
				t.Errorf("components/%s/%s differs between openapi-management.json and openapi.json", kind, name)
			}
		}
	}
}
