// Command signins floods the sign-in route from many client addresses
// (one X-Forwarded-For address per flooder, through a trusted proxy: the
// service must list 127.0.0.1 in TRUSTED_PROXIES) with wrong passwords,
// and meanwhile signs in honestly, each time from a fresh address, at
// even intervals. It reports the flood's answers and how each honest
// sign-in went. bench/signins.sh runs it against the service. It is a
// load tool, not part of the service.
//
//	signins -url http://127.0.0.1:18092 -flooders 64 -duration 20s -honest 10 -user admin -password secret
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:18092", "the service")
	flooders := flag.Int("flooders", 64, "flooding addresses, one connection each")
	duration := flag.Duration("duration", 20*time.Second, "how long the flood lasts")
	honest := flag.Int("honest", 10, "honest sign-ins during the flood")
	user := flag.String("user", "admin", "the honest user")
	password := flag.String("password", "", "the honest user's password")
	within := flag.Duration("within", 3*time.Second, "how soon an honest sign-in must succeed")
	flag.Parse()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *flooders + 8}}
	signIn := func(addr, body string) (int, time.Duration) {
		req, _ := http.NewRequest("POST", *base+"/api/v1/auth/token", bytes.NewBufferString(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", addr)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, time.Since(start)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	ctx, stop := context.WithTimeout(context.Background(), *duration)
	defer stop()
	var mu sync.Mutex
	flood := map[int]int{}
	var wg sync.WaitGroup
	for i := range *flooders {
		wg.Go(func() {
			addr := fmt.Sprintf("198.18.%d.%d", i/250, i%250+1)
			for n := 0; ctx.Err() == nil; n++ {
				code, _ := signIn(addr, fmt.Sprintf(`{"username":"nobody%d_%d","password":"wrong password"}`, i, n))
				mu.Lock()
				flood[code]++
				mu.Unlock()
			}
		})
	}
	began := time.Now()
	var took []time.Duration
	ok := 0
	for k := range *honest {
		time.Sleep(time.Until(began.Add(time.Duration(k+1) * *duration / time.Duration(*honest+1))))
		body := fmt.Sprintf(`{"username":%q,"password":%q}`, *user, *password)
		code, d := signIn(fmt.Sprintf("203.0.113.%d", k+1), body)
		fmt.Printf("honest %2d at %4.1fs: %d in %v\n", k+1, time.Since(began).Seconds()-d.Seconds(), code, d.Round(time.Millisecond))
		if code == http.StatusOK && d <= *within {
			ok++
		}
		took = append(took, d)
	}
	wg.Wait()
	slices.Sort(took)
	fmt.Printf("flood: %d addresses for %v, answers %v\n", *flooders, *duration, flood)
	fmt.Printf("honest: %d of %d succeeded within %v; median %v, worst %v\n", ok, *honest, *within,
		took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}
