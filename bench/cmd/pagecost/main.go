// Command pagecost measures what this machine charges for memory touched for
// the first time: the page fault of each 4 KiB page of fresh anonymous memory,
// of the Go heap, and of memory advised for transparent huge pages. On the
// paravirtualised VM the benchmark runs on, a fault costs ~15 µs (tens of
// times a bare-metal one), which makes fresh memory a large part of a run's
// CPU; bench/README.md ("seventh session") has the numbers.
//
//	go run ./bench/cmd/pagecost [-mib 64]
//
// Linux only. Exit status 2 on usage errors, 1 when memory cannot be mapped.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	mib := flag.Int("mib", 64, "MiB of memory to touch per measurement")
	flag.Parse()
	if *mib <= 0 {
		fmt.Fprintln(os.Stderr, "pagecost: -mib must be > 0")
		os.Exit(2)
	}
	n := *mib << 20
	const page = 4096
	touch := func(b []byte) time.Duration {
		t := time.Now()
		for i := 0; i < len(b); i += page {
			b[i] = 1
		}
		return time.Since(t) / time.Duration(len(b)/page)
	}
	anon := func(huge bool) (time.Duration, error) {
		b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			return 0, err
		}
		defer unix.Munmap(b)
		if huge {
			if err := unix.Madvise(b, unix.MADV_HUGEPAGE); err != nil {
				return 0, err
			}
		}
		return touch(b), nil
	}
	small, err := anon(false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pagecost: mmap:", err)
		os.Exit(1)
	}
	fmt.Printf("anonymous memory, 4 KiB pages:   %v per page\n", small)
	fmt.Printf("Go heap (make([]byte, %d MiB)):   %v per page\n", *mib, touch(make([]byte, n)))
	if huge, err := anon(true); err != nil {
		fmt.Printf("transparent huge pages:          unavailable (%v)\n", err)
	} else {
		fmt.Printf("transparent huge pages (advised): %v per 4 KiB\n", huge)
	}
}
