package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// SCIM filters (RFC 7644 section 3.4.2.2) parsed into a typed tree: the
// store compiles it to SQL with every value an argument (store_scim.go),
// and PATCH evaluates the value filters of its paths on one value
// (scim_patch.go). Nothing here knows SQL or HTTP.

// Bounds of a filter, so that no request makes a statement of unbounded
// size: its length in bytes and the comparisons and operators it holds.
const (
	scimFilterMaxBytes = 2048
	scimFilterMaxNodes = 64
	scimFilterMaxDepth = 16
)

// scimUserSchema is the core User schema's URN; an attribute may be
// written with it as a prefix.
const scimUserSchema = "urn:ietf:params:scim:schemas:core:2.0:User"

// scimEnterpriseSchema is the enterprise extension's URN, whose
// attributes the service does not store (docs/scim.md).
const scimEnterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

// filterNode is a node of a parsed filter.
type filterNode interface{ filterNode() }

// attrPath names an attribute, lower-cased, and its sub-attribute ("" for
// none): emails.value is {"emails", "value"}.
type attrPath struct {
	Attr, Sub string
}

func (p attrPath) String() string {
	if p.Sub == "" {
		return p.Attr
	}
	return p.Attr + "." + p.Sub
}

// filterValue is a comparison's literal: a string, number, boolean or
// null (Kind "string", "number", "bool", "null").
type filterValue struct {
	Kind string
	Str  string // the string, or the number as written
	Bool bool
}

// filterCompare is "path op value", or "path pr" (Value unused).
type filterCompare struct {
	Path  attrPath
	Op    string // eq ne co sw ew gt ge lt le pr, lower-case
	Value filterValue
}

// filterLogic is "left and right" or "left or right".
type filterLogic struct {
	Op          string // "and" or "or"
	Left, Right filterNode
}

// filterNot is "not (inner)".
type filterNot struct{ Inner filterNode }

// filterValuePath is "attr[inner]": some value of the multi-valued attr
// matches inner, whose paths name attr's sub-attributes.
type filterValuePath struct {
	Attr  string
	Inner filterNode
}

func (filterCompare) filterNode()   {}
func (filterLogic) filterNode()     {}
func (filterNot) filterNode()       {}
func (filterValuePath) filterNode() {}

// invalidFilter is the error of a filter that cannot be parsed or used.
func invalidFilter(format string, args ...any) error {
	return &SCIMRequestError{Type: "invalidFilter", Detail: "The filter is not valid: " + fmt.Sprintf(format, args...)}
}

// parseSCIMFilter parses a filter expression.
func parseSCIMFilter(text string) (filterNode, error) {
	if len(text) > scimFilterMaxBytes {
		return nil, invalidFilter("it is longer than %d bytes", scimFilterMaxBytes)
	}
	p := &filterParser{text: text}
	node, err := p.parseOr(0)
	if err != nil {
		return nil, err
	}
	if tok := p.next(); tok.kind != tokEnd {
		return nil, invalidFilter("unexpected %q at byte %d", tok.text, tok.pos)
	}
	return node, nil
}

// filterParser is a recursive-descent parser over the filter's tokens.
type filterParser struct {
	text  string
	pos   int
	peekd *filterToken
	nodes int
}

type tokenKind int

const (
	tokEnd tokenKind = iota
	tokWord
	tokString
	tokLParen
	tokRParen
	tokLBracket
	tokRBracket
)

type filterToken struct {
	kind tokenKind
	text string // a word as written, or a string's value
	pos  int
}

// next returns the next token and consumes it.
func (p *filterParser) next() filterToken {
	if p.peekd != nil {
		tok := *p.peekd
		p.peekd = nil
		return tok
	}
	return p.scan()
}

// peek returns the next token without consuming it.
func (p *filterParser) peek() filterToken {
	if p.peekd == nil {
		tok := p.scan()
		p.peekd = &tok
	}
	return *p.peekd
}

// scan reads one token from the text.
func (p *filterParser) scan() filterToken {
	for p.pos < len(p.text) && (p.text[p.pos] == ' ' || p.text[p.pos] == '\t') {
		p.pos++
	}
	start := p.pos
	if p.pos >= len(p.text) {
		return filterToken{kind: tokEnd, pos: start}
	}
	switch c := p.text[p.pos]; c {
	case '(', ')', '[', ']':
		p.pos++
		return filterToken{kind: map[byte]tokenKind{'(': tokLParen, ')': tokRParen, '[': tokLBracket, ']': tokRBracket}[c], text: string(c), pos: start}
	case '"':
		return p.scanString()
	}
	for p.pos < len(p.text) && !strings.ContainsRune(" \t()[]\"", rune(p.text[p.pos])) {
		p.pos++
	}
	return filterToken{kind: tokWord, text: p.text[start:p.pos], pos: start}
}

// scanString reads a JSON string literal; a malformed one is a word that
// no rule accepts.
func (p *filterParser) scanString() filterToken {
	start := p.pos
	for i := start + 1; i < len(p.text); i++ {
		switch p.text[i] {
		case '\\':
			i++
		case '"':
			var s string
			if err := json.Unmarshal([]byte(p.text[start:i+1]), &s); err != nil {
				break
			}
			p.pos = i + 1
			return filterToken{kind: tokString, text: s, pos: start}
		}
	}
	p.pos = len(p.text)
	return filterToken{kind: tokWord, text: p.text[start:], pos: start}
}

// count counts a node against the bounds.
func (p *filterParser) count(depth int) error {
	if p.nodes++; p.nodes > scimFilterMaxNodes {
		return invalidFilter("it has more than %d comparisons and operators", scimFilterMaxNodes)
	}
	if depth > scimFilterMaxDepth {
		return invalidFilter("it nests deeper than %d levels", scimFilterMaxDepth)
	}
	return nil
}

// parseOr parses "a or b or ...": or binds less tightly than and.
func (p *filterParser) parseOr(depth int) (filterNode, error) {
	return p.parseLogic(depth, "or", p.parseAnd)
}

// parseAnd parses "a and b and ...".
func (p *filterParser) parseAnd(depth int) (filterNode, error) {
	return p.parseLogic(depth, "and", p.parseUnary)
}

// parseLogic parses operands joined by op, left to right.
func (p *filterParser) parseLogic(depth int, op string, operand func(int) (filterNode, error)) (filterNode, error) {
	left, err := operand(depth)
	if err != nil {
		return nil, err
	}
	for tok := p.peek(); tok.kind == tokWord && strings.EqualFold(tok.text, op); tok = p.peek() {
		p.next()
		if err := p.count(depth); err != nil {
			return nil, err
		}
		right, err := operand(depth)
		if err != nil {
			return nil, err
		}
		left = filterLogic{Op: op, Left: left, Right: right}
	}
	return left, nil
}

// parseUnary parses "not (f)", "(f)" or an attribute expression.
func (p *filterParser) parseUnary(depth int) (filterNode, error) {
	if err := p.count(depth); err != nil {
		return nil, err
	}
	tok := p.next()
	switch {
	case tok.kind == tokWord && strings.EqualFold(tok.text, "not"):
		if open := p.next(); open.kind != tokLParen {
			return nil, invalidFilter(`"not" must be followed by "(" at byte %d`, open.pos)
		}
		inner, err := p.parseGroup(depth + 1)
		if err != nil {
			return nil, err
		}
		return filterNot{Inner: inner}, nil
	case tok.kind == tokLParen:
		return p.parseGroup(depth + 1)
	case tok.kind == tokWord:
		return p.parseAttrExpr(tok, depth)
	case tok.kind == tokEnd:
		return nil, invalidFilter("it ends where an attribute was expected")
	}
	return nil, invalidFilter("unexpected %q at byte %d", tok.text, tok.pos)
}

// parseGroup parses "f)" after an opening parenthesis.
func (p *filterParser) parseGroup(depth int) (filterNode, error) {
	inner, err := p.parseOr(depth)
	if err != nil {
		return nil, err
	}
	if closing := p.next(); closing.kind != tokRParen {
		return nil, invalidFilter(`a ")" is missing at byte %d`, closing.pos)
	}
	return inner, nil
}

// parseAttrExpr parses "path pr", "path op value" or "attr[filter]".
func (p *filterParser) parseAttrExpr(word filterToken, depth int) (filterNode, error) {
	path, err := parseAttrPath(word.text)
	if err != nil {
		return nil, err
	}
	if p.peek().kind == tokLBracket {
		p.next()
		if path.Sub != "" {
			return nil, invalidFilter("%q cannot take a value filter", word.text)
		}
		inner, err := p.parseOr(depth + 1)
		if err != nil {
			return nil, err
		}
		if closing := p.next(); closing.kind != tokRBracket {
			return nil, invalidFilter(`a "]" is missing at byte %d`, closing.pos)
		}
		return filterValuePath{Attr: path.Attr, Inner: inner}, nil
	}
	opTok := p.next()
	op := strings.ToLower(opTok.text)
	if opTok.kind != tokWord || !strings.Contains(" eq ne co sw ew gt ge lt le pr ", " "+op+" ") {
		return nil, invalidFilter("an operator (eq ne co sw ew gt ge lt le pr) is expected at byte %d", opTok.pos)
	}
	if op == "pr" {
		return filterCompare{Path: path, Op: op}, nil
	}
	value, err := p.parseValue()
	if err != nil {
		return nil, err
	}
	return filterCompare{Path: path, Op: op, Value: value}, nil
}

// parseValue parses a comparison's literal.
func (p *filterParser) parseValue() (filterValue, error) {
	tok := p.next()
	switch {
	case tok.kind == tokString:
		return filterValue{Kind: "string", Str: tok.text}, nil
	case tok.kind != tokWord:
		return filterValue{}, invalidFilter("a value is expected at byte %d", tok.pos)
	case strings.EqualFold(tok.text, "true"), strings.EqualFold(tok.text, "false"):
		return filterValue{Kind: "bool", Bool: strings.EqualFold(tok.text, "true")}, nil
	case strings.EqualFold(tok.text, "null"):
		return filterValue{Kind: "null"}, nil
	}
	var n json.Number
	if err := json.Unmarshal([]byte(tok.text), &n); err != nil {
		return filterValue{}, invalidFilter("%q at byte %d is not a value: strings are quoted", truncate(tok.text, 64), tok.pos)
	}
	return filterValue{Kind: "number", Str: string(n)}, nil
}

// parseAttrPath parses an attribute name with an optional
// sub-attribute, and with the core User schema's URN as an optional
// prefix, into lower case.
func parseAttrPath(text string) (attrPath, error) {
	name := text
	if len(name) > len(scimUserSchema) && strings.EqualFold(name[:len(scimUserSchema)+1], scimUserSchema+":") {
		name = name[len(scimUserSchema)+1:]
	}
	attr, sub, _ := strings.Cut(strings.ToLower(name), ".")
	if !isAttrName(attr) || sub != "" && !isAttrName(sub) {
		return attrPath{}, invalidFilter("%q is not an attribute name", truncate(text, 64))
	}
	return attrPath{Attr: attr, Sub: sub}, nil
}

// isAttrName reports whether s is an ATTRNAME of RFC 7644: a letter,
// then letters, digits, '-', '_' or '$'.
func isAttrName(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isASCIIAlnum(c) && c != '-' && c != '_' && c != '$' {
			return false
		}
	}
	return true
}

// evalFilter evaluates a value filter on one value of a multi-valued
// attribute, elem, whose keys are its lower-case sub-attributes.
// Strings compare without regard to case (email values and types are
// not case-exact).
func evalFilter(node filterNode, elem map[string]any) (bool, error) {
	switch n := node.(type) {
	case filterLogic:
		left, err := evalFilter(n.Left, elem)
		if err != nil {
			return false, err
		}
		right, err := evalFilter(n.Right, elem)
		if n.Op == "and" {
			return left && right, err
		}
		return left || right, err
	case filterNot:
		inner, err := evalFilter(n.Inner, elem)
		return !inner, err
	case filterCompare:
		return evalCompare(n, elem)
	}
	return false, &SCIMRequestError{Type: "invalidPath", Detail: "A value filter cannot hold another one."}
}

// evalCompare evaluates one comparison on elem.
func evalCompare(c filterCompare, elem map[string]any) (bool, error) {
	got, ok := elem[c.Path.Attr]
	if c.Path.Sub != "" || !ok {
		return false, &SCIMRequestError{Type: "invalidPath", Detail: fmt.Sprintf("%q is not a sub-attribute here.", c.Path.String())}
	}
	if c.Op == "pr" {
		return got != "", nil
	}
	if b, isBool := got.(bool); isBool {
		want := c.Value.Bool || c.Value.Kind == "string" && strings.EqualFold(c.Value.Str, "true")
		switch c.Op {
		case "eq":
			return b == want, nil
		case "ne":
			return b != want, nil
		}
		return false, &SCIMRequestError{Type: "invalidPath", Detail: "A boolean compares with eq or ne only."}
	}
	if c.Value.Kind == "number" || c.Value.Kind == "bool" {
		return false, &SCIMRequestError{Type: "invalidPath", Detail: fmt.Sprintf("%q compares to a string.", c.Path.String())}
	}
	have, want := strings.ToLower(got.(string)), strings.ToLower(c.Value.Str)
	switch c.Op {
	case "eq":
		return have == want, nil
	case "ne":
		return have != want, nil
	case "co":
		return strings.Contains(have, want), nil
	case "sw":
		return strings.HasPrefix(have, want), nil
	case "ew":
		return strings.HasSuffix(have, want), nil
	case "gt":
		return have > want, nil
	case "ge":
		return have >= want, nil
	case "lt":
		return have < want, nil
	}
	return have <= want, nil
}

// scimUserID parses a user id as SCIM writes it: decimal digits without
// sign or leading zeros, each id having one spelling; false for any
// other string, which names no user.
func scimUserID(s string) (int64, bool) {
	if s == "" || s[0] == '0' || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil
}
