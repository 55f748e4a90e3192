package main

import (
	"bytes"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	runtimemetrics "runtime/metrics"
	"slices"
	"sync"
	"time"
)

// The standard process_* and go_* metric families, with the names, types
// and HELP texts of prometheus/client_golang's process and Go collectors
// (HELP texts copied as they are, odd punctuation included, so that
// dashboards and alerts written for them work here unchanged), written by
// hand from runtime/metrics and the Linux /proc file system.
//
// The go_memstats_* families are read with runtime/metrics, as
// client_golang has done since Go 1.17: runtime.ReadMemStats stops the
// world, runtime/metrics.Read does not. Every family here has a
// runtime/metrics equivalent (named in its HELP text) except three:
// go_threads (the number of threads created, from the threadcreate
// profile, as client_golang does; /sched/gomaxprocs:threads is the
// GOMAXPROCS setting, not a thread count), and go_gc_duration_seconds and
// go_memstats_last_gc_time_seconds, which come from debug.ReadGCStats (it
// copies the runtime's pause history under the heap lock, without
// stopping the world).
//
// The process_* families need /proc; where it cannot be read (any other
// system than Linux) they are left out, each on its own, and the go_*
// families are still written.

// Indexes of the runtime/metrics samples read at each scrape.
const (
	rmGoroutines = iota
	rmHeapObjectsBytes
	rmHeapUnusedBytes
	rmHeapFreeBytes
	rmHeapReleasedBytes
	rmHeapStacksBytes
	rmTotalBytes
	rmMetadataOtherBytes
	rmAllocsBytes
	rmAllocsObjects
	rmTinyAllocsObjects
	rmFreesObjects
	rmHeapObjects
	rmHeapGoalBytes
	rmCount
)

// runtimeMetricNames are the runtime/metrics sample names, by index.
var runtimeMetricNames = [rmCount]string{
	rmGoroutines:         "/sched/goroutines:goroutines",
	rmHeapObjectsBytes:   "/memory/classes/heap/objects:bytes",
	rmHeapUnusedBytes:    "/memory/classes/heap/unused:bytes",
	rmHeapFreeBytes:      "/memory/classes/heap/free:bytes",
	rmHeapReleasedBytes:  "/memory/classes/heap/released:bytes",
	rmHeapStacksBytes:    "/memory/classes/heap/stacks:bytes",
	rmTotalBytes:         "/memory/classes/total:bytes",
	rmMetadataOtherBytes: "/memory/classes/metadata/other:bytes",
	rmAllocsBytes:        "/gc/heap/allocs:bytes",
	rmAllocsObjects:      "/gc/heap/allocs:objects",
	rmTinyAllocsObjects:  "/gc/heap/tiny/allocs:objects",
	rmFreesObjects:       "/gc/heap/frees:objects",
	rmHeapObjects:        "/gc/heap/objects:objects",
	rmHeapGoalBytes:      "/gc/heap/goal:bytes",
}

// runtimeScratch is what a scrape reads into, kept between scrapes so that
// a scrape allocates little: the runtime/metrics samples, the GC pause
// history (debug.ReadGCStats allocates about 6 KiB unless given its
// buffers back) and a buffer for /proc files. Scrapes take turns; the
// lock is held only while reading, never while writing the response.
var runtimeScratch struct {
	sync.Mutex
	samples []runtimemetrics.Sample
	gc      debug.GCStats
	buf     []byte
}

// runtimeSnapshot is one scrape's reading of the runtime and the process.
type runtimeSnapshot struct {
	rm          [rmCount]uint64
	threads     int
	gcQuantiles [5]float64 // pause quantiles 0, 0.25, 0.5, 0.75 and 1, in seconds
	gcPauses    float64    // total pause, in seconds
	gcCount     int64
	lastGC      float64 // Unix seconds; 0 before the first collection

	cpuSeconds, virtualBytes, residentBytes float64
	haveStat                                bool // the three above were read
	openFDs                                 int
	haveOpenFDs                             bool
	maxFDs                                  uint64
	haveMaxFDs                              bool
}

// gcQuantileLabels label runtimeSnapshot.gcQuantiles, as client_golang does.
var gcQuantileLabels = [5]string{
	labels("quantile", "0"), labels("quantile", "0.25"), labels("quantile", "0.5"),
	labels("quantile", "0.75"), labels("quantile", "1"),
}

// readRuntime reads the runtime's and the process's figures.
func readRuntime(s *runtimeSnapshot) {
	r := &runtimeScratch
	r.Lock()
	defer r.Unlock()
	if r.samples == nil {
		r.samples = make([]runtimemetrics.Sample, rmCount)
		for i := range r.samples {
			r.samples[i].Name = runtimeMetricNames[i]
		}
		r.gc.PauseQuantiles = make([]time.Duration, len(s.gcQuantiles))
	}
	runtimemetrics.Read(r.samples)
	for i, sample := range r.samples {
		// Every sample named above is a uint64 since Go 1.17; one the
		// runtime stopped supporting reads as zero, as in client_golang
		// (TestRuntimeMetricNamesSupported catches that on upgrade).
		if sample.Value.Kind() == runtimemetrics.KindUint64 {
			s.rm[i] = sample.Value.Uint64()
		}
	}
	s.threads, _ = runtime.ThreadCreateProfile(nil) // = pprof.Lookup("threadcreate").Count()

	debug.ReadGCStats(&r.gc)
	for i, q := range r.gc.PauseQuantiles {
		s.gcQuantiles[i] = q.Seconds()
	}
	s.gcPauses = r.gc.PauseTotal.Seconds()
	s.gcCount = r.gc.NumGC
	if r.gc.NumGC > 0 {
		s.lastGC = float64(r.gc.LastGC.UnixNano()) / 1e9
	}

	readProcess(s, &r.buf)
}

// userHZ is the unit of the times in /proc/<pid>/stat: sysconf(_SC_CLK_TCK),
// which the kernel fixes at 100 for user space whatever its own tick rate.
const userHZ = 100

// readProcess reads the process's CPU time and memory from /proc/self/stat
// and its file descriptors from /proc/self/fd and /proc/self/limits,
// using buf for the files' contents. What it cannot read it leaves out.
func readProcess(s *runtimeSnapshot, buf *[]byte) {
	var err error
	if *buf, err = readProcFile("/proc/self/stat", *buf); err == nil {
		utime, ok1 := statField(*buf, 14)
		stime, ok2 := statField(*buf, 15)
		vsize, ok3 := statField(*buf, 23)
		rss, ok4 := statField(*buf, 24) // in pages
		if s.haveStat = ok1 && ok2 && ok3 && ok4; s.haveStat {
			s.cpuSeconds = float64(utime+stime) / userHZ
			s.virtualBytes = float64(vsize)
			s.residentBytes = float64(rss) * float64(os.Getpagesize())
		}
	}
	s.openFDs, s.haveOpenFDs = countOpenFDs()
	if *buf, err = readProcFile("/proc/self/limits", *buf); err == nil {
		s.maxFDs, s.haveMaxFDs = softLimit(*buf, "Max open files")
	}
}

// readProcFile reads a whole file into buf, growing it if need be. /proc
// files report no size, so os.ReadFile would allocate for each read.
func readProcFile(name string, buf []byte) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return buf[:0], err
	}
	defer f.Close()
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 1024)
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf[:0], err
		}
	}
}

// statField returns the number in field n (counted from 1, as proc(5)
// does) of /proc/<pid>/stat. The second field, the command name in
// parentheses, may hold spaces and parentheses itself, so fields are
// counted from the last closing parenthesis, which ends it.
func statField(stat []byte, n int) (uint64, bool) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 || n < 3 {
		return 0, false
	}
	rest := stat[end+1:]
	for field := 2; ; {
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) == 0 {
			return 0, false
		}
		field++
		i := bytes.IndexAny(rest, " \n")
		if i < 0 {
			i = len(rest)
		}
		if field == n {
			return parseDecimal(rest[:i])
		}
		rest = rest[i:]
	}
}

// softLimit returns the soft limit of the /proc/<pid>/limits line that
// starts with name; false if it is "unlimited" or missing.
func softLimit(limits []byte, name string) (uint64, bool) {
	for line := range bytes.Lines(limits) {
		if rest, ok := bytes.CutPrefix(line, []byte(name)); ok {
			rest = bytes.TrimLeft(rest, " ")
			if i := bytes.IndexByte(rest, ' '); i >= 0 {
				rest = rest[:i]
			}
			return parseDecimal(rest)
		}
	}
	return 0, false
}

// parseDecimal parses an unsigned decimal number without allocating (as
// strconv.ParseUint(string(b)) may, for its error).
func parseDecimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// countOpenFDs counts the entries of /proc/self/fd, the descriptor used to
// read it included, as client_golang does.
func countOpenFDs() (int, bool) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	defer d.Close()
	count := 0
	for {
		names, err := d.Readdirnames(64)
		count += len(names)
		if err == io.EOF {
			return count, true
		}
		if err != nil {
			return 0, false
		}
	}
}

// processStartTime is the process's start, in Unix seconds: the boot time
// (btime in /proc/stat) plus the start time after boot (field 22 of
// /proc/self/stat, in clock ticks); where /proc cannot tell, the time this
// package was initialized, a few milliseconds later.
var processStartTime = sync.OnceValue(func() float64 {
	if start, ok := procStartTime(); ok {
		return start
	}
	return float64(packageInitTime.UnixNano()) / 1e9
})

var packageInitTime = time.Now()

func procStartTime() (float64, bool) {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	ticks, ok := statField(stat, 22)
	if !ok {
		return 0, false
	}
	system, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for line := range bytes.Lines(system) {
		if rest, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			if btime, ok := parseDecimal(bytes.TrimSpace(rest)); ok {
				return float64(btime) + float64(ticks)/userHZ, true
			}
		}
	}
	return 0, false
}

// writeRuntimeMetrics writes the process_* and go_* families.
func writeRuntimeMetrics(e *expositionWriter) {
	var s runtimeSnapshot
	readRuntime(&s)

	if s.haveStat {
		e.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", s.cpuSeconds)
	}
	if s.haveOpenFDs {
		e.gauge("process_open_fds", "Number of open file descriptors.", float64(s.openFDs))
	}
	if s.haveMaxFDs {
		e.gauge("process_max_fds", "Maximum number of open file descriptors.", float64(s.maxFDs))
	}
	if s.haveStat {
		e.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", s.virtualBytes)
		e.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", s.residentBytes)
	}
	e.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", processStartTime())

	e.family("go_gc_duration_seconds", "summary", "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.")
	for i, q := range s.gcQuantiles {
		e.sample("go_gc_duration_seconds", gcQuantileLabels[i], q)
	}
	e.sample("go_gc_duration_seconds_sum", "", s.gcPauses)
	e.sample("go_gc_duration_seconds_count", "", float64(s.gcCount))
	e.gauge("go_goroutines", "Number of goroutines that currently exist.", float64(s.rm[rmGoroutines]))
	e.family("go_info", "gauge", "Information about the Go environment.")
	e.sample("go_info", goInfoLabels, 1)
	e.gauge("go_threads", "Number of OS threads created.", float64(s.threads))

	rm := func(i int) float64 { return float64(s.rm[i]) }
	e.gauge("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", rm(rmHeapObjectsBytes))
	e.counter("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", rm(rmAllocsBytes))
	e.gauge("go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", rm(rmTotalBytes))
	// Tiny allocations count as both allocated and freed, as in MemStats,
	// so that mallocs - frees stays the number of live objects.
	e.counter("go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", rm(rmAllocsObjects)+rm(rmTinyAllocsObjects))
	e.counter("go_memstats_frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.", rm(rmFreesObjects)+rm(rmTinyAllocsObjects))
	e.gauge("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", rm(rmHeapObjectsBytes))
	e.gauge("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", rm(rmHeapReleasedBytes)+rm(rmHeapFreeBytes))
	e.gauge("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", rm(rmHeapObjectsBytes)+rm(rmHeapUnusedBytes))
	e.gauge("go_memstats_heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", rm(rmHeapReleasedBytes))
	e.gauge("go_memstats_heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", rm(rmHeapObjects))
	e.gauge("go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.", rm(rmHeapStacksBytes))
	e.gauge("go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.", rm(rmMetadataOtherBytes))
	e.gauge("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", rm(rmHeapGoalBytes))
	e.gauge("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", s.lastGC)
}

var goInfoLabels = labels("version", runtime.Version())
