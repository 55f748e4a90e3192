package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// feedLag drives PATCHes of full_name at a fixed rate through one or more
// replicas (-url, comma-separated: a write goes to each in turn) while a
// consumer follows GET /api/v1/events through the first, and reports, for
// the writes that succeeded, the write latency and the feed lag: from the
// write's 200 to the consumer's first page that holds its event (matched
// by X-Request-ID). Printed: "writes ok failed write_p99_ms lag_p50_ms
// lag_p99_ms lag_max_ms missing".
//
//	ceilings feedlag -url http://127.0.0.1:18080 -token T -rate 150 -duration 20s -max-id N
func feedLag(args []string) error {
	fs := flag.NewFlagSet("feedlag", flag.ExitOnError)
	urls := fs.String("url", "http://127.0.0.1:18080", "the service, or replicas, comma-separated")
	token := fs.String("token", "", "an admin's bearer token")
	rate := fs.Float64("rate", 150, "writes per second")
	duration := fs.Duration("duration", 20*time.Second, "how long to write")
	maxID := fs.Int64("max-id", 10000, "ids written are 1..max-id")
	fs.Parse(args)
	replicas := strings.Split(*urls, ",")
	client := &http.Client{Timeout: 30 * time.Second}
	run := &lagRun{answered: map[string]time.Time{}, seen: map[string]time.Time{}}
	stop, caughtUp := make(chan struct{}), make(chan struct{})
	consumed := make(chan error, 1)
	go func() { consumed <- run.consume(client, replicas[0], *token, caughtUp, stop) }()
	select { // writes start once the consumer is at the head
	case <-caughtUp:
	case err := <-consumed:
		return err
	}
	run.write(client, replicas, *token, *rate, *duration, *maxID)
	time.Sleep(2 * time.Second) // the last events' lag
	close(stop)
	if err := <-consumed; err != nil {
		return err
	}
	fmt.Println(run.report())
	return nil
}

// lagRun is what one feedlag run has seen.
type lagRun struct {
	mu           sync.Mutex
	answered     map[string]time.Time // request id -> its write's 200
	seen         map[string]time.Time // request id -> first page with its event
	writeLatency []time.Duration
	failed       int
}

// write sends PATCHes at rate for d, each from its own goroutine, so a
// slow answer does not slow the rate.
func (l *lagRun) write(client *http.Client, replicas []string, token string, rate float64, d time.Duration, maxID int64) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	end := time.After(d)
	var wg sync.WaitGroup
	for n := 0; ; n++ {
		select {
		case <-end:
			wg.Wait()
			return
		case <-tick.C:
		}
		wg.Go(func() { l.writeOne(client, replicas[n%len(replicas)], token, n, 1+rand.Int64N(maxID)) })
	}
}

// writeOne sends one PATCH and records its answer.
func (l *lagRun) writeOne(client *http.Client, base, token string, n int, id int64) {
	requestID := fmt.Sprintf("feedlag-%d-%d", time.Now().UnixNano(), n)
	// Unique in every run: a name sent again would be a no-op, with no
	// event to wait for.
	body := fmt.Sprintf(`{"full_name":"Feed Lag %s"}`, requestID)
	req, _ := http.NewRequest("PATCH", fmt.Sprintf("%s/api/v1/users/%d", base, id), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", requestID)
	start := time.Now()
	resp, err := client.Do(req)
	done := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil || resp.StatusCode != http.StatusOK {
		l.failed++
	} else {
		l.answered[requestID] = done
		l.writeLatency = append(l.writeLatency, done.Sub(start))
	}
	if resp != nil {
		resp.Body.Close()
	}
}

// consume follows the feed until stop, polling every 2 ms when it is at
// the head; it closes caughtUp when it first gets there, after reading
// the events written before the run.
func (l *lagRun) consume(client *http.Client, base, token string, caughtUp, stop chan struct{}) error {
	cursor := ""
	for atHead := false; ; {
		select {
		case <-stop:
			return nil
		default:
		}
		url := base + "/api/v1/events?per_page=1000"
		if cursor != "" {
			url += "&after=" + cursor
		}
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			time.Sleep(50 * time.Millisecond) // a replica down: try again
			continue
		}
		var page struct {
			Items []struct {
				RequestID string `json:"request_id"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("feed: %d %v", resp.StatusCode, err)
		}
		now := time.Now()
		l.mu.Lock()
		for _, e := range page.Items {
			if _, ok := l.seen[e.RequestID]; !ok && atHead {
				l.seen[e.RequestID] = now
			}
		}
		l.mu.Unlock()
		cursor = page.NextCursor
		if len(page.Items) < 1000 {
			if !atHead {
				atHead = true
				close(caughtUp)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// report is the run's line of figures.
func (l *lagRun) report() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lags []time.Duration
	missing := 0
	for id, at := range l.answered {
		seen, ok := l.seen[id]
		if !ok {
			missing++
			continue
		}
		lags = append(lags, max(0, seen.Sub(at)))
	}
	return fmt.Sprintf("%d %d %.1f %.1f %.1f %.1f %d", len(l.answered), l.failed, quantileMS(l.writeLatency, 0.99),
		quantileMS(lags, 0.50), quantileMS(lags, 0.99), quantileMS(lags, 1), missing)
}

// quantileMS is the q quantile of ds in milliseconds (0 for none).
func quantileMS(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := min(len(ds)-1, int(q*float64(len(ds))))
	return float64(ds[i].Microseconds()) / 1000
}
