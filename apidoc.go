package main

import (
	_ "embed"
	"net/http"
)

// The API's description, embedded so that the binary serves what it was
// built with: openapi.json is the contract (checked against the routes and
// every response of the test suite), docs.html renders it for people, with
// no library and nothing fetched from outside. The management listener has
// a document of its own, openapi-management.json, served there: generated
// clients take one server per document, so probes and metrics described in
// the public one would be called on the wrong listener.
var (
	//go:embed openapi.json
	openAPIDocument []byte
	//go:embed openapi-management.json
	managementOpenAPIDocument []byte
	//go:embed docs.html
	docsPage []byte
)

func (s *server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeStatic(w, "application/json", openAPIDocument)
}

func (s *server) handleManagementOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeStatic(w, "application/json", managementOpenAPIDocument)
}

func (s *server) handleDocs(w http.ResponseWriter, r *http.Request) {
	// The page's own inline script and styles, and fetches to this origin;
	// nothing else.
	w.Header().Set("Content-Security-Policy",
		"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	writeStatic(w, "text/html; charset=utf-8", docsPage)
}

func writeStatic(w http.ResponseWriter, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}
