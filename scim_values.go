package main

import (
	"encoding/json"
	"strings"
)

// The values of SCIM attributes as providers send them: multi-valued
// attributes and their primary entry, and strings, optional strings and
// booleans, some of them as strings ("True", as Entra ID writes them).

// primaryValue picks the value of a multi-valued attribute's primary
// entry (else its first): from an array of objects, one object, or a
// plain string. It returns the entry too (nil for a plain string).
func primaryValue(raw json.RawMessage, attr string) (string, map[string]any, error) {
	var entries []map[string]any
	if err := json.Unmarshal(raw, &entries); err != nil {
		var one map[string]any
		var text string
		switch {
		case json.Unmarshal(raw, &one) == nil && one != nil:
			entries = []map[string]any{one}
		case json.Unmarshal(raw, &text) == nil:
			return text, nil, nil
		default:
			return "", nil, scimValueError("%s must be an array of objects with a value.", attr)
		}
	}
	var chosen map[string]any
	for _, e := range entries {
		if chosen == nil || truthy(lowerKeys(e)["primary"]) {
			chosen = e
		}
	}
	value, ok := lowerKeys(chosen)["value"].(string)
	if !ok {
		return "", nil, scimValueError("%s needs an entry with a string value.", attr)
	}
	return value, chosen, nil
}

// lowerKeys returns m with its keys lower-cased: attribute names are
// case-insensitive.
func lowerKeys(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// truthy reads a boolean that a provider may send as a string ("True").
func truthy(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return strings.EqualFold(b, "true")
	}
	return false
}

func isNull(raw json.RawMessage) bool { return strings.TrimSpace(string(raw)) == "null" }

// isEmptyArray reports whether raw is [].
func isEmptyArray(raw json.RawMessage) bool {
	var items []json.RawMessage
	return json.Unmarshal(raw, &items) == nil && items != nil && len(items) == 0
}

// setString decodes a string value into dst.
func setString(dst *string, raw json.RawMessage, name string) error {
	if err := json.Unmarshal(raw, dst); err != nil || isNull(raw) {
		return scimValueError("%s must be a string.", name)
	}
	return nil
}

// setOptional decodes a string or null into dst.
func setOptional(dst **string, raw json.RawMessage, name string) error {
	if isNull(raw) {
		*dst = nil
		return nil
	}
	var s string
	if err := setString(&s, raw, name); err != nil {
		return err
	}
	*dst = &s
	return nil
}

// setActive decodes active: a boolean, or the strings "true" and "false"
// in any case, as Entra ID sends them.
func setActive(dst *bool, raw json.RawMessage) error {
	var v any
	if err := json.Unmarshal(raw, &v); err == nil {
		switch b := v.(type) {
		case bool:
			*dst = b
			return nil
		case string:
			if strings.EqualFold(b, "true") || strings.EqualFold(b, "false") {
				*dst = strings.EqualFold(b, "true")
				return nil
			}
		}
	}
	return scimValueError("active must be true or false.")
}
