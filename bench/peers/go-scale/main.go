// go-scale: the shape of bench/scale-tasks with goroutines, for
// bench/scale. N goroutines (-n, default 1,000,000) block: one in -c
// (default 10) receives on a channel, one in -f (default 100) reads its
// end of a socketpair, the others wait on a timer an hour away (or a
// shared done channel, which wakes them). Once all are blocked it reads
// VmRSS and the lines of /proc/self/maps, and VmRSS again after -idle
// (default 3 s), a collection and debug.FreeOSMemory (Go shrinks idle
// goroutines' stacks at collections), then wakes them all (closes the
// done and data channels, writes one byte to each socketpair) and waits
// for them. Prints the same "key=value" lines as scale-tasks. Standard
// library only.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func vmrss() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var kib int64
		if n, _ := fmt.Sscanf(sc.Text(), "VmRSS: %d kB", &kib); n == 1 {
			return kib * 1024
		}
	}
	return -1
}

func maps() int64 {
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return -1
	}
	return int64(bytes.Count(data, []byte("\n")))
}

func main() {
	n := flag.Int("n", 1000000, "goroutines")
	chanEvery := flag.Int("c", 10, "one in this many receives on a channel (0: none)")
	fdEvery := flag.Int("f", 100, "one in this many reads a socketpair (0: none)")
	idle := flag.Duration("idle", 3*time.Second, "blocked this long, then a GC, before rss_parked")
	flag.Parse()
	if *n < 1 || *chanEvery == 1 || *fdEvery == 1 {
		fmt.Fprintln(os.Stderr, "go-scale: need -n >= 1, and -c, -f of 0 or >= 2")
		os.Exit(2)
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}

	done := make(chan struct{})
	data := make(chan byte)
	var blocked, finished sync.WaitGroup
	var woken int64
	var conns []net.Conn  // ours
	var theirs []net.Conn // the goroutines'
	var failure error
	sleepers, receivers := 0, 0

	rss0, maps0 := vmrss(), maps()
	t0 := time.Now()
	spawned := 0
	for i := 0; i < *n; i++ {
		switch {
		case *fdEvery > 0 && i%*fdEvery == 0:
			fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				failure = fmt.Errorf("socketpair after %d goroutines: %v", spawned, err)
				break
			}
			var c [2]net.Conn
			for k := 0; k < 2; k++ {
				f := os.NewFile(uintptr(fds[k]), "socketpair")
				c[k], err = net.FileConn(f) // dups the descriptor
				f.Close()
				if err != nil {
					failure = fmt.Errorf("socketpair after %d goroutines: %v", spawned, err)
				}
			}
			if failure != nil {
				break
			}
			theirs = append(theirs, c[0])
			conns = append(conns, c[1])
			blocked.Add(1)
			finished.Add(1)
			go func(c net.Conn) {
				defer finished.Done()
				var b [1]byte
				blocked.Done()
				if k, _ := c.Read(b[:]); k == 1 {
					atomic.AddInt64(&woken, 1)
				}
			}(c[0])
		case *chanEvery > 0 && i%*chanEvery == 1:
			receivers++
			blocked.Add(1)
			finished.Add(1)
			go func() {
				defer finished.Done()
				blocked.Done()
				if _, ok := <-data; !ok {
					atomic.AddInt64(&woken, 1)
				}
			}()
		default:
			sleepers++
			blocked.Add(1)
			finished.Add(1)
			go func() {
				defer finished.Done()
				t := time.NewTimer(time.Hour)
				blocked.Done()
				select {
				case <-t.C:
				case <-done:
					t.Stop()
					atomic.AddInt64(&woken, 1)
				}
			}()
		}
		if failure != nil {
			break
		}
		spawned++
	}
	t1 := time.Now()
	blocked.Wait()
	runtime.Gosched()
	t2 := time.Now()
	rss1, maps1 := vmrss(), maps()

	// What coecho gets by parking, Go gets (if at all) by shrinking idle
	// goroutines' stacks at a collection: idle, collect, return memory.
	p0 := time.Now()
	time.Sleep(*idle)
	runtime.GC()
	debug.FreeOSMemory()
	p1 := time.Now()
	rss2 := vmrss()

	t3 := time.Now()
	close(done)
	close(data)
	for _, c := range conns {
		c.Write([]byte{'x'})
	}
	finished.Wait()
	t4 := time.Now()
	for _, c := range append(conns, theirs...) {
		c.Close()
	}

	s := float64(spawned)
	if s == 0 {
		s = 1
	}
	fmt.Printf("tasks=%d\nspawned=%d\nstack_size=go\nsleepers=%d\nfd_waiters=%d\n"+
		"chan_receivers=%d\n", *n, spawned, sleepers, len(conns), receivers)
	fmt.Printf("spawn_ns=%.1f\nfirst_run_ns=%.1f\n", float64(t1.Sub(t0).Nanoseconds())/s,
		float64(t2.Sub(t1).Nanoseconds())/s)
	fmt.Printf("rss_before=%d\nrss_blocked=%d\nrss_per_task=%.1f\n", rss0, rss1,
		float64(rss1-rss0)/s)
	fmt.Printf("maps_before=%d\nmaps_blocked=%d\n", maps0, maps1)
	fmt.Printf("parked=0\npark_ms=%.1f\nrss_parked=%d\nrss_per_parked_task=%.1f\n",
		float64(p1.Sub(p0).Nanoseconds())/1e6, rss2, float64(rss2-rss0)/s)
	fmt.Printf("wake_ms=%.3f\nwoken=%d\n", float64(t4.Sub(t3).Nanoseconds())/1e6, woken)
	fmt.Printf("gomaxprocs=%d\n", runtime.GOMAXPROCS(0))
	if failure != nil {
		fmt.Printf("status=failed\nerror=%v\n", failure)
		os.Exit(1)
	}
	if int(woken) != spawned {
		fmt.Printf("status=failed\nerror=%d of %d goroutines woken\n", woken, spawned)
		os.Exit(1)
	}
	fmt.Println("status=ok")
}
