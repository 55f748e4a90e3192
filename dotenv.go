package main

import (
	"errors"
	"fmt"
	"strings"
)

// The .env file: its syntax (parseDotenv) and how its variables stand
// behind the real environment (withDotenv).

// parseDotenv parses the text of a .env file: KEY=VALUE lines, blank lines
// and # comments, an optional "export " prefix, and values that may be
// single-quoted (taken literally) or double-quoted (with \n, \t, \" and \\
// escapes). Unquoted values end at " #" (a trailing comment) and are trimmed.
func parseDotenv(text string) (map[string]string, error) {
	vars := make(map[string]string)
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, raw, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !isEnvName(key) {
			return nil, fmt.Errorf("line %d: want KEY=VALUE", i+1)
		}
		value, err := dotenvValue(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", i+1, key, err)
		}
		vars[key] = value
	}
	return vars, nil
}

// dotenvValue unquotes one value of a .env line.
func dotenvValue(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	switch quote := raw[0]; quote {
	case '\'', '"':
		end := closingQuote(raw, quote)
		if end < 0 {
			return "", errors.New("unterminated quoted value")
		}
		if rest := strings.TrimSpace(raw[end+1:]); rest != "" && !strings.HasPrefix(rest, "#") {
			return "", errors.New("text after the closing quote")
		}
		if quote == '\'' {
			return raw[1:end], nil
		}
		return unescapeDouble(raw[1:end]), nil
	}
	if i := strings.Index(raw, " #"); i >= 0 {
		raw = raw[:i]
	}
	return strings.TrimSpace(raw), nil
}

// closingQuote returns the index of the quote that closes raw[0], or -1.
// Inside double quotes a backslash escapes the next byte.
func closingQuote(raw string, quote byte) int {
	for i := 1; i < len(raw); i++ {
		switch {
		case quote == '"' && raw[i] == '\\':
			i++
		case raw[i] == quote:
			return i
		}
	}
	return -1
}

func unescapeDouble(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func isEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// withDotenv returns a getenv that prefers the real environment and falls
// back to the variables of a .env file. A variable set in the environment
// wins even when empty, so "DB_PASSWORD= usersvc" clears the file's
// DB_PASSWORD (and an empty value means the variable's default).
func withDotenv(lookupEnv func(string) (string, bool), file map[string]string) func(string) string {
	return func(name string) string {
		if v, ok := lookupEnv(name); ok {
			return v
		}
		return file[name]
	}
}
