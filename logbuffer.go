package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// bufferedWriter batches log lines into few write system calls: one
// write per access line is a cost every request would pay
// (docs/performance.md has what it cost). It flushes every interval,
// whenever its buffer fills, and on Close, so a line waits at most
// interval before the log shows it; a crash of the whole process loses
// at most that much.
type bufferedWriter struct {
	mu   sync.Mutex
	buf  *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// Log buffering settings.
const (
	logBufferSize    = 64 << 10
	logFlushInterval = 100 * time.Millisecond
)

func newBufferedWriter(w io.Writer, size int, interval time.Duration) *bufferedWriter {
	b := &bufferedWriter{buf: bufio.NewWriterSize(w, size), stop: make(chan struct{}), done: make(chan struct{})}
	go b.flushEvery(interval)
	return b
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *bufferedWriter) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Flush()
}

func (b *bufferedWriter) flushEvery(interval time.Duration) {
	defer close(b.done)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			b.flush()
		case <-b.stop:
			return
		}
	}
}

// Close stops the periodic flush and writes out what is buffered.
func (b *bufferedWriter) Close() error {
	close(b.stop)
	<-b.done
	return b.flush()
}
