package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRunServesAndShutsDown(t *testing.T) {
	_, serverCfg := testServer(t)
	db := newTestDatabase(t, "")
	var dbName string
	db.QueryRow("SELECT DATABASE()").Scan(&dbName)
	host, port := splitAddr(t, serverCfg.Addr)
	env := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "MANAGEMENT_ADDR": "127.0.0.1:0", "DB_HOST": host, "DB_PORT": port, "DB_USER": serverCfg.User,
		"DB_PASSWORD": serverCfg.Passwd, "DB_NAME": dbName, "BCRYPT_COST": "4",
		"ENV_FILE":       t.TempDir() + "/absent.env",
		"ADMIN_USERNAME": "boot", "ADMIN_EMAIL": "boot@example.com", "ADMIN_PASSWORD": "boot password",
	}
	getenv := func(name string) string { return env[name] }
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"usersvc"}, getenv, stdout) }()

	addr := waitForLogField(t, stdout, "listening", "addr")
	managementAddr := waitForLogField(t, stdout, "listening", "management_addr")
	env["HTTP_ADDR"] = addr
	var out syncBuffer
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := run(context.Background(), []string{"usersvc", "healthcheck"}, getenv, &out)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck never passed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitForLogField(t, stdout, "bootstrap admin created", "username")
	for _, probe := range []string{"/health/ready", "/metrics"} {
		resp, err := http.Get("http://" + managementAddr + probe)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s on the management listener: %v %v", probe, resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.Post("http://"+addr+"/api/v1/auth/token", "application/json",
		strings.NewReader(`{"username":"boot","password":"boot password"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login through the real server: %v %v", resp, err)
	}
	var token tokenResponse
	json.NewDecoder(resp.Body).Decode(&token)
	resp.Body.Close()
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/users",
		strings.NewReader(`{"username":"runner","email":"runner@example.com","password":"rq7-tz4w"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create through the real server: %v %v", resp, err)
	}
	resp.Body.Close()
	if strings.Contains(stdout.String(), "boot password") {
		t.Error("the log holds the bootstrap password")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after shutdown: %v", err)
		}
	case <-time.After(shutdownTimeout + 2*time.Second):
		t.Fatal("run did not return after the context ended")
	}
	if err := run(context.Background(), []string{"usersvc", "healthcheck"}, getenv, &out); err == nil {
		t.Error("healthcheck passed with the server stopped")
	}
	if err := run(context.Background(), []string{"usersvc", "bogus"}, getenv, &out); err == nil {
		t.Error("an unknown command did not fail")
	}
}
