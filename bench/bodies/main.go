// Command bodies opens many connections at once, each sending one large
// request body to a URL (half with a declared Content-Length, half
// chunked, written as fast as the server reads), and reports how the
// answers went. bench/bodies.sh runs it against the service and samples
// the service's resident memory meanwhile. It is a load tool, not part of
// the service.
//
//	bodies -url http://127.0.0.1:18080/api/v1/auth/token -conns 1000 -size 1048576
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

func main() {
	target := flag.String("url", "http://127.0.0.1:18080/api/v1/auth/token", "where to POST")
	conns := flag.Int("conns", 1000, "connections at once")
	size := flag.Int("size", 1<<20, "bytes of each body")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bodies:", err)
		os.Exit(2)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	for i := range *conns {
		wg.Go(func() {
			outcome := send(u, *size, i%2 == 1, start)
			mu.Lock()
			outcomes[outcome]++
			mu.Unlock()
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	keys := make([]string, 0, len(outcomes))
	for k := range outcomes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Printf("%d connections, %d-byte bodies, %.1fs:", *conns, *size, time.Since(began).Seconds())
	for _, k := range keys {
		fmt.Printf(" %s=%d", k, outcomes[k])
	}
	fmt.Println()
}

// send writes one request with a body of size bytes and returns the
// response's status, or what went wrong.
func send(u *url.URL, size int, chunked bool, start <-chan struct{}) string {
	conn, err := net.DialTimeout("tcp", u.Host, 30*time.Second)
	if err != nil {
		return "dial-error"
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	<-start
	w := bufio.NewWriterSize(conn, 64<<10)
	fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", u.RequestURI(), u.Host)
	if chunked {
		fmt.Fprintf(w, "Transfer-Encoding: chunked\r\n\r\n")
	} else {
		fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", size)
	}
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'a'
	}
	go func() { // the server may answer before the body is sent
		for sent := 0; sent < size; sent += len(chunk) {
			n := min(len(chunk), size-sent)
			if chunked {
				fmt.Fprintf(w, "%x\r\n", n)
			}
			if _, err := w.Write(chunk[:n]); err != nil {
				return
			}
			if chunked {
				w.WriteString("\r\n")
			}
		}
		if chunked {
			w.WriteString("0\r\n\r\n")
		}
		w.Flush()
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "no-answer"
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}
