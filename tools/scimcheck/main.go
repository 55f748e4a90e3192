// Command scimcheck validates the SCIM answers of recorded HTTP traffic
// with a third-party SCIM library, elimity-com/scim: every User resource
// (alone, or in a ListResponse) against RFC 7643's core User schema, the
// discovery resources against the ServiceProviderConfig, ResourceType
// and Schema definitions (a Schema answer must also load as a schema),
// plus what the library leaves to the server: the common attributes id
// and meta, no password in any answer, and every error in the SCIM
// error schema with its status as a string.
//
// The traffic is what the service's tests record with RECORD_TRAFFIC
// (traffic_test.go). It is its own module, so that the service's go.mod
// keeps only its two dependencies.
//
//	go run . -traffic /tmp/traffic.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/elimity-com/scim/schema"
)

// exchange is one recorded request and its answer (traffic_test.go's
// exchangeRecord); only what this check reads.
type exchange struct {
	Test         string `json:"test"`
	Method       string `json:"method"`
	URL          string `json:"url"`
	Status       int    `json:"status"`
	ResponseBody []byte `json:"response_body"`
}

const (
	prefix      = "/scim/v2"
	listSchema  = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	errorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scimcheck:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("scimcheck", flag.ContinueOnError)
	trafficPath := flags.String("traffic", "", "the recorded traffic: one JSON exchange per line")
	if err := flags.Parse(args); err != nil {
		return err
	}
	f, err := os.Open(*trafficPath)
	if err != nil {
		return err
	}
	defer f.Close()
	c := &checker{findings: map[string][]string{}, kinds: map[string]int{}}
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for scanner.Scan() {
		var x exchange
		if err := json.Unmarshal(scanner.Bytes(), &x); err != nil {
			return fmt.Errorf("%s: %w", *trafficPath, err)
		}
		c.check(x)
	}
	if err := scanner.Err(); err != nil {
		return err
	}
	return c.report(stdout)
}

type checker struct {
	findings map[string][]string // finding: the exchanges that show it
	kinds    map[string]int      // what was validated, counted
}

// fail records a finding of exchange x.
func (c *checker) fail(x exchange, format string, args ...any) {
	finding := fmt.Sprintf(format, args...)
	c.findings[finding] = append(c.findings[finding], x.Test+": "+x.Method+" "+x.URL)
}

// check validates one exchange, if it is a SCIM one with a body.
func (c *checker) check(x exchange) {
	u, err := url.Parse(x.URL)
	if err != nil || !strings.HasPrefix(u.Path, prefix+"/") || x.Method == "HEAD" || len(x.ResponseBody) == 0 {
		return
	}
	var body map[string]any
	if err := json.Unmarshal(x.ResponseBody, &body); err != nil {
		c.fail(x, "the body is not a JSON object")
		return
	}
	if strings.Contains(strings.ToLower(string(x.ResponseBody)), `"password"`) && !strings.HasPrefix(u.Path, prefix+"/Schemas") {
		c.fail(x, "an answer holds a password")
	}
	if x.Status >= 400 {
		c.checkError(x, body)
		return
	}
	projected := u.Query().Get("attributes") != "" || u.Query().Get("excludedAttributes") != ""
	path := strings.TrimPrefix(u.Path, prefix)
	switch {
	case path == "/Users" && x.Method == "GET":
		c.checkList(x, body, func(r map[string]any) { c.checkUser(x, r, projected) })
	case strings.HasPrefix(path, "/Users"):
		c.checkUser(x, body, projected)
	case path == "/ServiceProviderConfig":
		c.validate(x, "ServiceProviderConfig", schema.ServiceProviderConfigSchema(), body)
	case path == "/ResourceTypes":
		c.checkList(x, body, func(r map[string]any) { c.validate(x, "ResourceType", schema.ResourceTypeSchema(), r) })
	case strings.HasPrefix(path, "/ResourceTypes/"):
		c.validate(x, "ResourceType", schema.ResourceTypeSchema(), body)
	case path == "/Schemas":
		c.checkList(x, body, func(r map[string]any) { c.checkSchema(x, r) })
	case strings.HasPrefix(path, "/Schemas/"):
		c.checkSchema(x, body)
	default:
		c.fail(x, "a SCIM answer of no known resource")
	}
}

// validate validates a resource with the library's schema.
func (c *checker) validate(x exchange, kind string, s schema.Schema, resource map[string]any) {
	c.kinds[kind]++
	if _, scimErr := s.Validate(resource); scimErr != nil {
		c.fail(x, "%s: %s (%s)", kind, scimErr.Detail, scimErr.ScimType)
	}
}

// checkList checks a ListResponse and each of its resources.
func (c *checker) checkList(x exchange, body map[string]any, each func(map[string]any)) {
	c.kinds["ListResponse"]++
	if !hasSchema(body, listSchema) {
		c.fail(x, "ListResponse: schemas does not name %s", listSchema)
	}
	resources, ok := body["Resources"].([]any)
	total, totalOK := body["totalResults"].(float64)
	perPage, perPageOK := body["itemsPerPage"].(float64)
	start, startOK := body["startIndex"].(float64)
	if !ok || !totalOK || !perPageOK || !startOK || start < 1 || int(perPage) != len(resources) || total < perPage {
		c.fail(x, "ListResponse: totalResults, startIndex, itemsPerPage and Resources do not agree")
	}
	for _, r := range resources {
		if m, ok := r.(map[string]any); ok {
			each(m)
		} else {
			c.fail(x, "ListResponse: a resource that is not an object")
		}
	}
}

var weakETag = regexp.MustCompile(`^W/"[1-9][0-9]*"$`)

// checkUser validates a User resource with the core User schema (when
// no projection left attributes out) and its common attributes.
func (c *checker) checkUser(x exchange, r map[string]any, projected bool) {
	if !projected {
		c.validate(x, "User", schema.CoreUserSchema(), r)
	}
	if id, ok := r["id"].(string); !ok || id == "" {
		c.fail(x, "User: id is not a non-empty string")
	}
	meta, ok := r["meta"].(map[string]any)
	if !ok {
		if !projected {
			c.fail(x, "User: no meta")
		}
		return
	}
	for _, name := range []string{"created", "lastModified"} {
		if text, _ := meta[name].(string); !isDateTime(text) {
			c.fail(x, "User: meta.%s is not an xsd:dateTime", name)
		}
	}
	if location, _ := meta["location"].(string); !strings.HasPrefix(location, "http") || !strings.HasSuffix(location, "/Users/"+fmt.Sprint(r["id"])) {
		c.fail(x, "User: meta.location is not the resource's absolute URI")
	}
	if version, _ := meta["version"].(string); !weakETag.MatchString(version) {
		c.fail(x, "User: meta.version is not a weak ETag")
	}
	if meta["resourceType"] != "User" {
		c.fail(x, "User: meta.resourceType is not User")
	}
}

// isDateTime reports whether text is an RFC 3339 time.
func isDateTime(text string) bool {
	_, err := time.Parse(time.RFC3339Nano, text)
	return err == nil
}

// checkSchema validates a Schema resource with the library's definition
// of schemas, and loads it as a schema.
func (c *checker) checkSchema(x exchange, r map[string]any) {
	c.validate(x, "Schema", schema.Definition(), r)
	raw, _ := json.Marshal(r)
	var s schema.Schema
	if err := json.Unmarshal(raw, &s); err != nil {
		c.fail(x, "Schema: does not load as a schema: %v", err)
	}
}

// checkError checks an error answer's shape.
func (c *checker) checkError(x exchange, body map[string]any) {
	c.kinds["Error"]++
	if !hasSchema(body, errorSchema) || body["status"] != strconv.Itoa(x.Status) {
		c.fail(x, "Error: not the SCIM error schema with the status as a string")
	}
	if t, present := body["scimType"]; present {
		switch t {
		case "invalidFilter", "tooMany", "uniqueness", "mutability", "invalidSyntax", "invalidPath", "noTarget", "invalidValue", "invalidVers", "sensitive":
		default:
			c.fail(x, "Error: scimType %v is not one of RFC 7644's", t)
		}
	}
}

func hasSchema(body map[string]any, urn string) bool {
	schemas, _ := body["schemas"].([]any)
	for _, s := range schemas {
		if s == urn {
			return true
		}
	}
	return false
}

// report prints what was validated and the findings; findings fail.
func (c *checker) report(w io.Writer) error {
	var kinds []string
	for kind, n := range c.kinds {
		kinds = append(kinds, fmt.Sprintf("%s %d", kind, n))
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "validated: %s\n", strings.Join(kinds, ", "))
	var findings []string
	for f := range c.findings {
		findings = append(findings, f)
	}
	sort.Strings(findings)
	for _, f := range findings {
		fmt.Fprintf(w, "FAIL %s (%d), e.g. %s\n", f, len(c.findings[f]), c.findings[f][0])
	}
	if len(findings) > 0 {
		return fmt.Errorf("%d findings", len(findings))
	}
	if c.kinds["User"] == 0 || c.kinds["ListResponse"] == 0 || c.kinds["Schema"] == 0 || c.kinds["ServiceProviderConfig"] == 0 || c.kinds["ResourceType"] == 0 {
		return fmt.Errorf("the traffic holds too few SCIM answers to check")
	}
	return nil
}
