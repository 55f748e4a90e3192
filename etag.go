package main

import (
	"net/http"
	"strconv"
	"strings"
)

// entityTags is a parsed If-Match or If-None-Match header: "*" or a list
// of entity tags (RFC 9110 section 8.8.3).
type entityTags struct {
	any  bool
	tags []string // as sent, W/ kept
}

// parseEntityTags parses a conditional header's value. ok is false for a
// value that is neither "*" nor a comma-separated list of quoted tags.
func parseEntityTags(value string) (entityTags, bool) {
	value = strings.TrimSpace(value)
	if value == "*" {
		return entityTags{any: true}, true
	}
	var et entityTags
	for _, part := range strings.Split(value, ",") {
		tag := strings.TrimSpace(part)
		if tag == "" {
			continue // empty list elements are allowed (RFC 9110 section 5.6.1)
		}
		opaque := strings.TrimPrefix(tag, "W/")
		if len(opaque) < 2 || opaque[0] != '"' || opaque[len(opaque)-1] != '"' ||
			strings.ContainsAny(opaque[1:len(opaque)-1], "\" \t") {
			return entityTags{}, false
		}
		et.tags = append(et.tags, tag)
	}
	return et, len(et.tags) > 0
}

// matchesWeak is If-None-Match's comparison: W/ is ignored on both sides.
func (et entityTags) matchesWeak(etag string) bool {
	if et.any {
		return true
	}
	for _, tag := range et.tags {
		if strings.TrimPrefix(tag, "W/") == strings.TrimPrefix(etag, "W/") {
			return true
		}
	}
	return false
}

// ifMatch turns the request's If-Match header into the versions the
// store accepts under the row lock: any without the header or with "*",
// otherwise those the strong tags name. A weak tag, or a tag that is not
// one of our versions, matches nothing (RFC 9110 section 13.1.1).
func ifMatch(r *http.Request) (VersionMatch, error) {
	value := r.Header.Get("If-Match")
	if value == "" {
		return VersionMatch{}, nil
	}
	et, ok := parseEntityTags(value)
	if !ok {
		return VersionMatch{}, badRequest(`If-Match must be * or a list of entity tags such as "3".`,
			fieldError{Field: "If-Match", Message: `must be * or a list of entity tags such as "3"`})
	}
	if et.any {
		return VersionMatch{}, nil
	}
	match := VersionMatch{Checked: true}
	for _, tag := range et.tags {
		if version, ok := parsePositiveInt(strings.Trim(tag, `"`)); ok && tag == `"`+strconv.FormatInt(version, 10)+`"` {
			match.Versions = append(match.Versions, version)
		}
	}
	return match, nil
}

// notModified reports whether the request's If-None-Match matches u, so a
// GET can answer 304. A malformed header is ignored, as if absent.
func notModified(r *http.Request, u *User) bool {
	et, ok := parseEntityTags(r.Header.Get("If-None-Match"))
	return ok && et.matchesWeak(etagOf(u))
}
