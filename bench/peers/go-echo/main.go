// go-echo: a Go standard-library echo server, one goroutine per connection,
// each copying what it reads back with a 16 KiB buffer (the io.Copy shape,
// written out so the buffer size is explicit). A peer for bench/echo and
// bench/memory; prints nothing on success.
//
// Usage: go-echo PORT
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16*1024)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-echo PORT")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	if err != nil || port <= 0 || port > 65535 {
		fmt.Fprintln(os.Stderr, "go-echo: bad port")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-echo:", err)
		os.Exit(1)
	}
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			// EMFILE and the like: keep serving the open connections, retry
			// with a growing pause (5 ms to 1 s), and say so once per pause.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			fmt.Fprintln(os.Stderr, "go-echo: accept:", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go serve(c)
	}
}
