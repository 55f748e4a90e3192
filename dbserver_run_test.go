package main

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// One private MariaDB server for the whole run, for when the configured
// server does not answer: the database tests run on it rather than being
// skipped or failing, and the run says so.

// runServer is the private server of the run, if one was started;
// TestMain stops it (stopRunServer).
var runServer *privateServer

// startRunServer starts the run's private server, the configured server
// having given answer, and connects to it. Without MariaDB installed,
// or when the server does not start, the error gives answer and why.
func startRunServer(answer error) (*sql.DB, *mysql.Config, error) {
	progs, err := findMariaDBPrograms()
	if err != nil {
		return nil, nil, fmt.Errorf("%w; and no private server instead: %v", answer, err)
	}
	// The stock buffer pool, not the TLS servers' 32 MB: every database
	// test of the run uses this one.
	s, err := launchPrivateMariaDB(progs, privateServerOptions{ExtraArgs: []string{"--innodb-buffer-pool-size=128M"}})
	if err != nil {
		return nil, nil, fmt.Errorf("%w; and a private MariaDB server did not start: %v", answer, err)
	}
	db, cfg, err := connectTestConfig(s.Config())
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("%w; and the private MariaDB server did not answer: %v", answer, err)
	}
	runServer = s
	fmt.Fprintf(os.Stderr, "usersvc: %v; the database tests run on a private MariaDB server in %s at %s "+
		"(started in %v), not on that server\n", answer, s.Dir, s.Addr, s.Total.Round(time.Millisecond))
	return db, cfg, nil
}

// stopRunServer stops the run's private server, if there is one, and
// removes its files.
func stopRunServer() error {
	if runServer == nil {
		return nil
	}
	return runServer.Close()
}

// TestPrivateServerForTheRun: with a TEST_DB_DSN whose password the
// server refuses, a database test still runs and passes, on a private
// server started for the run, which the run names; after it neither the
// server's directory nor its process is left. A directory a dead run
// left is removed; one of a live run is kept.
func TestPrivateServerForTheRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private MariaDB server; run without -short")
	}
	if _, err := findMariaDBPrograms(); err != nil {
		skipUnlessCI(t, "no private MariaDB server: "+err.Error())
	}
	t.Parallel()
	base := privateServerBaseDir()
	stale := makePrivateDir(t, base, deadPID(t), "stale")
	live := makePrivateDir(t, base, os.Getpid(), "live")

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCreateUser$", "-test.v", "-test.timeout=5m")
	cmd.Env = append(environWithout("TEST_DB_DSN", "CI", noDatabaseOptOut, "RECORD_TRAFFIC"),
		"TEST_DB_DSN=root:wrong@tcp(127.0.0.1:3306)/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the run failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestCreateUser") {
		t.Fatalf("TestCreateUser did not pass:\n%s", out)
	}
	m := regexp.MustCompile(`usersvc: tcp\(127\.0\.0\.1:3306\) as root \(.*\).*; ` +
		`the database tests run on a private MariaDB server in (\S+) at \S+ \(started in \S+\), not on that server`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("the run does not say the configured server's answer and that it used a private server:\n%s", out)
	}
	t.Logf("%s", regexp.MustCompile(`usersvc: .*private MariaDB.*`).Find(out))

	dir := string(m[1])
	if want := filepath.Join(base, privateDirPrefix+strconv.Itoa(cmd.ProcessState.Pid())+"-"); !strings.HasPrefix(dir, want) {
		t.Errorf("the private server's directory %s is not named %s...", dir, want)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the private server's directory %s is left behind (%v)", dir, err)
	}
	if procs := processesMentioning(dir); len(procs) > 0 {
		t.Errorf("processes of the private server are left behind:\n%s", strings.Join(procs, "\n"))
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the directory of a dead run, %s, was not removed (%v)", stale, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the directory of a live run, %s, was removed: %v", live, err)
	}
}

// makePrivateDir makes a private server's directory as the test binary
// pid would name it, removed when the test ends.
func makePrivateDir(t *testing.T, base string, pid int, suffix string) string {
	t.Helper()
	dir := filepath.Join(base, privateDirPrefix+strconv.Itoa(pid)+"-"+suffix)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// deadPID is the pid of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = environWithout("TEST_DB_DSN")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.Pid()
}

// environWithout is the environment without the variables names.
func environWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, name) {
			env = append(env, kv)
		}
	}
	return env
}
