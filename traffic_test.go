package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
)

// With RECORD_TRAFFIC=<file>, every exchange the contract checker sees is
// appended to the file as one JSON line, for a third-party validator to
// check against openapi.json (tools/openapicheck).

// exchangeRecord is one request and its answer, as the validator reads it.
type exchangeRecord struct {
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

var traffic struct {
	once sync.Once
	mu   sync.Mutex
	file *os.File
	err  error
}

// trafficFile is the file RECORD_TRAFFIC names, opened for appending once,
// or nil when it is unset.
func trafficFile(t testing.TB) *os.File {
	t.Helper()
	name := os.Getenv("RECORD_TRAFFIC")
	if name == "" {
		return nil
	}
	traffic.once.Do(func() {
		traffic.file, traffic.err = os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	})
	if traffic.err != nil {
		t.Fatalf("RECORD_TRAFFIC: %v", traffic.err)
	}
	return traffic.file
}

// keptBody is a request body that keeps a copy of what the handler read.
type keptBody struct {
	io.ReadCloser
	read bytes.Buffer
}

func (b *keptBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read.Write(p[:n])
	return n, err
}

// keepRequestBody makes req keep the body the handler reads, when traffic
// is recorded.
func keepRequestBody(req *http.Request) {
	if os.Getenv("RECORD_TRAFFIC") != "" && req.Body != nil && req.Body != http.NoBody {
		req.Body = &keptBody{ReadCloser: req.Body}
	}
}

// recordTraffic appends the exchange to the RECORD_TRAFFIC file, if any.
func recordTraffic(t testing.TB, listener string, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	f := trafficFile(t)
	if f == nil {
		return
	}
	r := exchangeRecord{Test: t.Name(), Listener: listener, Method: req.Method, URL: req.URL.RequestURI(),
		RequestHeaders: req.Header, Status: rec.Code, ResponseHeaders: rec.Header()}
	if kept, ok := req.Body.(*keptBody); ok {
		r.RequestBody = kept.read.Bytes()
	}
	if req.Method != http.MethodHead { // the server sends no body to a HEAD
		r.ResponseBody = rec.Body.Bytes()
	}
	line, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("record traffic: %v", err)
	}
	traffic.mu.Lock()
	defer traffic.mu.Unlock()
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Fatalf("record traffic: %v", err)
	}
}
