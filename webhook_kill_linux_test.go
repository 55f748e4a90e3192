package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestWebhookSurvivesKilledReplica is the bar, with real
// processes: two replicas of the built binary deliver to a receiver that
// answers 500 three times, then stalls past the timeout once, then
// accepts; mid-stream it stalls again, and the replica sending that call
// is killed with SIGKILL (found by the socket it called from). Another
// replica takes the lease once it runs out, and the receiver ends with
// every event accepted, in feed order, each call signed. Linux only: the
// caller is found through /proc.
func TestWebhookSurvivesKilledReplica(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	binary := filepath.Join(t.TempDir(), "usersvc")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	const killAt = 7 // the call whose sender dies
	killed := make(chan string, 1)
	rc := newReceiver(t, func(n int) int {
		switch {
		case n <= 3:
			return http.StatusInternalServerError
		case n == 4, n == killAt:
			return 0
		}
		return http.StatusOK
	})
	rc.onStall = func(n int, remote string) {
		if n == killAt {
			killed <- remote
		}
	}
	set := testWebhookSettings()
	app := newTestApp(t, func(c *Config) { c.Webhooks = set })
	app.waitNumbered()
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"]}`, rc.srv.URL))
	rc.trust(hook.Secret)
	var users []int64
	for i := range 8 {
		u, _ := app.newUser(fmt.Sprintf("survivor%d", i))
		users = append(users, u.ID)
	}
	want := app.userCreatedSeqs(users)

	replicas := &replicaSet{t: t, binary: binary, env: replicaEnv(t, app)}
	replicas.start()
	replicas.start()
	var victim int
	select {
	case remote := <-killed:
		victim = replicas.owner(remote, rc.srv.Listener.Addr().String())
		if victim == 0 {
			t.Fatalf("no replica owns the connection from %s", remote)
		}
		replicas.kill(victim)
	case <-time.After(90 * time.Second):
		t.Fatalf("call %d never came; the receiver got %d", killAt, len(rc.snapshot()))
	}
	eventually(t, 90*time.Second, "every event accepted after the kill", func() bool {
		accepted := map[int64]bool{}
		for _, id := range rc.accepted() {
			accepted[id] = true
		}
		return len(accepted) == len(want)
	})
	calls := rc.snapshot()
	checkInOrder(t, calls, want)
	if calls[killAt-1].id != calls[killAt].id {
		t.Errorf("after the kill, event %s was not sent again first (next: %s)", calls[killAt-1].id, calls[killAt].id)
	}
	t.Logf("%d calls, replica %d killed mid-call", len(calls), victim)
}

// replicaEnv is the environment of a replica of app's database, with the
// test's webhook settings.
func replicaEnv(t *testing.T, app *testApp) []string {
	_, serverCfg := testServer(t)
	var dbName string
	if err := app.db.QueryRow("SELECT DATABASE()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	host, port := splitAddr(t, serverCfg.Addr)
	env := []string{"HTTP_ADDR=127.0.0.1:0", "MANAGEMENT_ADDR=off", "DB_HOST=" + host, "DB_PORT=" + port,
		"DB_USER=" + serverCfg.User, "DB_PASSWORD=" + serverCfg.Passwd, "DB_NAME=" + dbName, "LOG_LEVEL=warn",
		"ENV_FILE=" + emptyEnvFile(t), "WEBHOOK_ALLOW_HTTP=true", "WEBHOOK_ALLOWED_NETWORKS=127.0.0.1/32",
		"WEBHOOK_TIMEOUT=1s", "WEBHOOK_LEASE=6s", "DB_TIMEOUT=2s", "WEBHOOK_RETRY_SCHEDULE=20ms,40ms,80ms,160ms", "PATH=" + os.Getenv("PATH")}
	return env
}

// replicaSet runs replicas of the binary, killed when the test ends.
type replicaSet struct {
	t      *testing.T
	binary string
	env    []string
	mu     sync.Mutex
	cmds   map[int]*exec.Cmd
}

// start starts one replica.
func (r *replicaSet) start() {
	r.t.Helper()
	cmd := exec.Command(r.binary)
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = &syncBuffer{}, &syncBuffer{}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	if r.cmds == nil {
		r.cmds = map[int]*exec.Cmd{}
	}
	r.cmds[cmd.Process.Pid] = cmd
	r.mu.Unlock()
	r.t.Cleanup(func() { r.kill(cmd.Process.Pid) })
}

// kill ends the replica pid with SIGKILL and reaps it.
func (r *replicaSet) kill(pid int) {
	r.mu.Lock()
	cmd := r.cmds[pid]
	delete(r.cmds, pid)
	r.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
}

// owner is the replica whose socket has the local address remote and is
// connected to server: its inode in /proc/net/tcp, then the process with
// that socket among its descriptors. 0: none.
func (r *replicaSet) owner(remote, server string) int {
	inode := socketInode(r.t, remote, server)
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid := range r.cmds {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); link == "socket:["+inode+"]" {
				return pid
			}
		}
	}
	return 0
}

// socketInode finds the inode of the IPv4 TCP socket from local to peer.
func socketInode(t *testing.T, local, peer string) string {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	defer f.Close()
	want := [2]string{procAddr(t, local), procAddr(t, peer)}
	scan := bufio.NewScanner(f)
	for scan.Scan() {
		fields := strings.Fields(scan.Text())
		if len(fields) > 9 && strings.EqualFold(fields[1], want[0]) && strings.EqualFold(fields[2], want[1]) {
			return fields[9]
		}
	}
	return ""
}

// procAddr is an IPv4 address and port as /proc/net/tcp writes them: the
// address as a little-endian hex word, the port in hex.
func procAddr(t *testing.T, addr string) string {
	host, port := splitAddr(t, addr)
	ip := net.ParseIP(host).To4()
	p, _ := strconv.Atoi(port)
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], p)
}
