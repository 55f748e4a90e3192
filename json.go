package main

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// The user JSON is written by hand: it is the hot path of every read and
// list, and appending to one buffer costs a fraction of reflection-based
// encoding (see BenchmarkEncodePage). It writes exactly what
// encoding/json would for the same fields, minus its HTML escaping.

// appendUserJSON appends u as a JSON object.
func appendUserJSON(b []byte, u *User) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, u.ID, 10)
	b = append(b, `,"username":`...)
	b = appendJSONString(b, u.Username)
	b = append(b, `,"email":`...)
	b = appendJSONString(b, u.Email)
	b = append(b, `,"full_name":`...)
	if u.FullName == nil {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, *u.FullName)
	}
	b = append(b, `,"role":`...)
	b = appendJSONString(b, string(u.Role))
	b = append(b, `,"is_active":`...)
	b = strconv.AppendBool(b, u.IsActive)
	b = append(b, `,"created_at":`...)
	b = appendTimestamp(b, u.CreatedAt)
	b = append(b, `,"updated_at":`...)
	b = appendTimestamp(b, u.UpdatedAt)
	return append(b, '}')
}

// appendTimestamp appends t as an RFC 3339 UTC string with exactly six
// fractional digits, the precision of the DATETIME(6) columns.
func appendTimestamp(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, timestampJSONForm)
	return append(b, '"')
}

// appendJSONString appends s as a JSON string (RFC 8259): quotes,
// backslashes and control characters escaped, U+2028 and U+2029 escaped
// for JavaScript's sake, and invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			if r == utf8.RuneError {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendJSONArray appends items as a JSON array, each written by
// appendItem.
func appendJSONArray[T any](b []byte, items []T, appendItem func([]byte, *T) []byte) []byte {
	b = append(b, '[')
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendItem(b, &items[i])
	}
	return append(b, ']')
}
