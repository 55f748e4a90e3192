// Command openapicheck validates recorded HTTP traffic against an OpenAPI
// document with a third-party validator, kin-openapi: each request with
// openapi3filter.ValidateRequest and each response with ValidateResponse,
// plus what kin-openapi leaves out (a status the operation does not list,
// a header the response does not declare, HEAD and 304 answers).
//
// The traffic is what the service's test suite records with
// RECORD_TRAFFIC=<file> (traffic_test.go): one JSON object per line. It
// is its own module, so that the service's go.mod keeps only its two
// dependencies.
//
//	go run . -spec ../../openapi.json -management-spec ../../openapi-management.json -traffic /tmp/traffic.jsonl
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// exchange is one recorded request and its answer (traffic_test.go's
// exchangeRecord).
type exchange struct {
	Test            string      `json:"test"`
	Listener        string      `json:"listener"`
	Method          string      `json:"method"`
	URL             string      `json:"url"`
	RequestHeaders  http.Header `json:"request_headers"`
	RequestBody     []byte      `json:"request_body"`
	Status          int         `json:"status"`
	ResponseHeaders http.Header `json:"response_headers"`
	ResponseBody    []byte      `json:"response_body"`
}

// listenerBase is where each listener's requests go, as its document's
// servers name it: the public one is "/", the management one its default
// address.
var listenerBase = map[string]string{
	"public":     "http://usersvc.test",
	"management": "http://127.0.0.1:9090",
}

// described is one listener's document and its router.
type described struct {
	doc    *openapi3.T
	router routers.Router
}

// load reads, validates and routes one OpenAPI document.
func load(ctx context.Context, path string) (described, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		return described{}, fmt.Errorf("load %s: %w", path, err)
	}
	if err := doc.Validate(ctx); err != nil {
		return described{}, fmt.Errorf("%s is not a valid OpenAPI document: %w", path, err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return described{}, fmt.Errorf("route %s: %w", path, err)
	}
	return described{doc, router}, nil
}

// headersNotDeclared are the response headers a document need not
// declare: HTTP's framing and the representation's own metadata.
var headersNotDeclared = []string{"Content-Length", "Content-Type", "Date", "Connection", "Transfer-Encoding"}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "openapicheck:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("openapicheck", flag.ContinueOnError)
	specPath := flags.String("spec", "openapi.json", "the OpenAPI document of the public listener")
	managementSpecPath := flags.String("management-spec", "openapi-management.json", "the OpenAPI document of the management listener")
	trafficPath := flags.String("traffic", "", "the recorded traffic: one JSON exchange per line")
	verbose := flags.Bool("v", false, "also list the 400s to requests the document accepts, by field")
	if err := flags.Parse(args); err != nil {
		return err
	}
	// kin-openapi decodes no text/html body; the /docs page is text.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	ctx := context.Background()
	c := &checker{listeners: map[string]described{}, findings: map[string][]string{}, operations: map[string]int{}, notes: map[string]int{}}
	for listener, path := range map[string]string{"public": *specPath, "management": *managementSpecPath} {
		d, err := load(ctx, path)
		if err != nil {
			return err
		}
		c.listeners[listener] = d
	}
	f, err := os.Open(*trafficPath)
	if err != nil {
		return err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for scanner.Scan() {
		var x exchange
		if err := json.Unmarshal(scanner.Bytes(), &x); err != nil {
			return fmt.Errorf("%s: line %d: %w", *trafficPath, c.total+1, err)
		}
		c.check(ctx, x)
	}
	if err := scanner.Err(); err != nil {
		return err
	}
	return c.report(stdout, *verbose)
}

type checker struct {
	listeners map[string]described // each listener's document

	total, preflights, unmatched, refused int
	operations                            map[string]int      // exchanges per "listener operation"
	findings                              map[string][]string // finding: the exchanges that show it
	notes                                 map[string]int      // "operation: field" of 400s to requests the document accepts
}

// finding records a problem that x shows.
func (c *checker) finding(x exchange, format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	c.findings[what] = append(c.findings[what], fmt.Sprintf("%s: %s %s %d", x.Test, x.Method, x.URL, x.Status))
}

func (c *checker) check(ctx context.Context, x exchange) {
	c.total++
	if x.Method == http.MethodOptions && x.RequestHeaders.Get("Origin") != "" && x.RequestHeaders.Get("Access-Control-Request-Method") != "" {
		c.preflights++ // CORS's own protocol on every path; info.description has it
		return
	}
	base, ok := listenerBase[x.Listener]
	d, described := c.listeners[x.Listener]
	if !ok || !described {
		c.finding(x, "unknown listener %q", x.Listener)
		return
	}
	req, err := http.NewRequest(x.Method, base+x.URL, bytes.NewReader(x.RequestBody))
	if err != nil {
		c.finding(x, "cannot rebuild the request: %v", err)
		return
	}
	req.Header = x.RequestHeaders.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	route, pathParams, err := d.router.FindRoute(d.documented(req))
	if err != nil {
		c.checkUnmatched(ctx, d.doc, x, req, err)
		return
	}
	c.operations[x.Listener+" "+route.Operation.OperationID]++
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: pathParams,
		Route:      route,
		Options: &openapi3filter.Options{
			AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc, // who may call what is the tests' business
			MultiError:          true,
			SkipSettingDefaults: true,
		},
	}
	switch err := openapi3filter.ValidateRequest(ctx, in); {
	case err != nil && x.Status < 400:
		c.finding(x, "%s: the service served a request the document refuses: %s", route.Operation.OperationID, oneLine(err))
	case err != nil:
		c.refused++
	case x.Status == http.StatusBadRequest:
		c.noteRefusal(x, route.Operation.OperationID)
	}
	c.checkResponse(ctx, x, in, route.Operation)
}

// noteRefusal notes a 400 to a request the document accepts, by the
// fields its problem names: a rule the document could state and does not
// (or one no schema can, such as a password equal to the username).
func (c *checker) noteRefusal(x exchange, operationID string) {
	var problem struct {
		Errors []struct{ Field string } `json:"errors"`
	}
	json.Unmarshal(x.ResponseBody, &problem) // the response check reports a body that is not a problem
	for _, e := range problem.Errors {
		c.notes[operationID+": "+e.Field]++
	}
}

// checkUnmatched checks the answer to a request that is no operation of
// the document: only the Unmatched problem (404, or 405 with Allow) may
// answer it.
func (c *checker) checkUnmatched(ctx context.Context, doc *openapi3.T, x exchange, req *http.Request, routeErr error) {
	c.unmatched++
	if !errors.Is(routeErr, routers.ErrPathNotFound) && !errors.Is(routeErr, routers.ErrMethodNotAllowed) {
		c.finding(x, "routing: %v", routeErr)
		return
	}
	if x.Status != http.StatusNotFound && x.Status != http.StatusMethodNotAllowed {
		c.finding(x, "no operation of the document (%v), answered %d instead of the Unmatched 404 or 405", routeErr, x.Status)
		return
	}
	unmatched := doc.Components.Responses["Unmatched"]
	if unmatched == nil {
		c.finding(x, "no operation of the document, and no components/responses/Unmatched to answer it")
		return
	}
	op := openapi3.NewOperation()
	op.OperationID = "(unmatched)"
	op.Responses = openapi3.NewResponses(openapi3.WithStatus(x.Status, unmatched))
	route := &routers.Route{Spec: doc, Path: x.URL, Method: x.Method, Operation: op}
	in := &openapi3filter.RequestValidationInput{Request: req, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	c.checkResponse(ctx, x, in, op)
}

// checkResponse validates the answer with kin-openapi, and adds what it
// does not check: the status listed (also for HEAD and 304, which
// ValidateResponse skips), no header the response does not declare, every
// required one present.
func (c *checker) checkResponse(ctx context.Context, x exchange, in *openapi3filter.RequestValidationInput, op *openapi3.Operation) {
	ref := op.Responses.Status(x.Status)
	if ref == nil || ref.Value == nil {
		c.finding(x, "%s: status %d is not listed", op.OperationID, x.Status)
		return
	}
	declared := map[string]*openapi3.HeaderRef{}
	for name, h := range ref.Value.Headers {
		declared[http.CanonicalHeaderKey(name)] = h
	}
	for name := range x.ResponseHeaders {
		if _, ok := declared[http.CanonicalHeaderKey(name)]; !ok && !slices.Contains(headersNotDeclared, http.CanonicalHeaderKey(name)) {
			c.finding(x, "%s %d: header %s is not declared", op.OperationID, x.Status, name)
		}
	}
	for name, h := range declared {
		if h.Value != nil && h.Value.Required && x.ResponseHeaders.Get(name) == "" {
			c.finding(x, "%s %d: required header %s is missing", op.OperationID, x.Status, name)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 x.Status,
		Header:                 x.ResponseHeaders,
		Body:                   io.NopCloser(bytes.NewReader(x.ResponseBody)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		c.finding(x, "%s %d: %s", op.OperationID, x.Status, oneLine(err))
	}
}

// report prints every finding with the exchanges that show it, and fails
// when there is any.
func (c *checker) report(w io.Writer, verbose bool) error {
	whats := make([]string, 0, len(c.findings))
	for what := range c.findings {
		whats = append(whats, what)
	}
	sort.Strings(whats)
	for _, what := range whats {
		shown := c.findings[what]
		fmt.Fprintf(w, "FINDING %s\n", what)
		for i, ex := range shown {
			if i == 3 {
				fmt.Fprintf(w, "    ... and %d more\n", len(shown)-i)
				break
			}
			fmt.Fprintf(w, "    %s\n", ex)
		}
	}
	if verbose {
		notes := make([]string, 0, len(c.notes))
		for note, n := range c.notes {
			notes = append(notes, fmt.Sprintf("%s (%d)", note, n))
		}
		sort.Strings(notes)
		fmt.Fprintf(w, "400s to requests the document accepts, by operation and field: %s\n", strings.Join(notes, ", "))
	}
	var unused []string
	for listener, d := range c.listeners {
		for path, item := range d.doc.Paths.Map() {
			for _, op := range item.Operations() {
				if c.operations[listener+" "+op.OperationID] == 0 {
					unused = append(unused, op.OperationID+" ("+listener+" "+path+")")
				}
			}
		}
	}
	sort.Strings(unused)
	fmt.Fprintf(w, "openapicheck (kin-openapi): %d exchanges: %d on %d operations, %d answered as no operation (404/405), %d CORS preflights skipped; %d requests the document refuses were refused (4xx); %d findings\n",
		c.total, c.total-c.unmatched-c.preflights, len(c.operations), c.unmatched, c.preflights, c.refused, len(c.findings))
	if len(unused) > 0 {
		fmt.Fprintf(w, "operations no exchange reached: %s\n", strings.Join(unused, ", "))
	}
	if len(c.findings) > 0 {
		return fmt.Errorf("%d findings", len(c.findings))
	}
	return nil
}

// oneLine flattens a validator's multi-line error.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// documented is req as the document lists it: HEAD is GET without a body
// (RFC 9110, 9.3.2), and a path with a trailing slash the service's mux
// also serves ({$}) is the path without it, when the document lists that
// one (the suite's own checker does the same: documentedRequest).
func (d described) documented(req *http.Request) *http.Request {
	r := req.Clone(req.Context())
	if r.Method == http.MethodHead {
		r.Method = http.MethodGet
	}
	if base, ok := strings.CutSuffix(r.URL.Path, "/"); ok && base != "" && d.doc.Paths.Value(base) != nil {
		r.URL.Path = base
	}
	return r
}
