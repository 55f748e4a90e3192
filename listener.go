package main

import (
	"net"
	"sync"
)

// limitListener caps the connections accepted from l and open at once at
// n: Accept waits while n are open. Connections past the cap wait in the
// kernel's backlog instead of holding memory here.
func limitListener(l net.Listener, n int) net.Listener {
	return &cappedListener{Listener: l, slots: make(chan struct{}, n)}
}

type cappedListener struct {
	net.Listener
	slots chan struct{}
}

// Accept takes a slot, then waits for a connection that will give it back
// when closed.
func (l *cappedListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	conn, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &cappedConn{Conn: conn, release: sync.OnceFunc(func() { <-l.slots })}, nil
}

// cappedConn gives its slot back on the first Close.
type cappedConn struct {
	net.Conn
	release func()
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
