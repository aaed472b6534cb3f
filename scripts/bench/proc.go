package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"ferry/test/testkit"
)

// procSample is what /proc tells about the process under test and every
// process below it (dante forks children; squid and haproxy may start
// helpers): CPU time in clock ticks, resident and proportional set size,
// open file descriptors.
type procSample struct {
	ticks  int64 // utime+stime of the tree, plus the root's cutime+cstime (reaped children)
	rssKiB int64 // sum of VmRSS (counts pages shared between processes once per process)
	pssKiB int64 // sum of Pss from smaps_rollup (shared pages split between sharers)
	fds    int64 // entries of /proc/PID/fd, summed
	procs  int   // processes in the tree
}

// clockTicks is the kernel's USER_HZ, the unit of utime and stime.
var clockTicks = testkit.ClockTicks

// tree returns root and all its descendants, root first.
func tree(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		f, err := testkit.StatFields(pid)
		if err != nil {
			continue
		}
		ppid := int(testkit.Atoi64(f[1]))
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out) && len(out) < 100000; i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// statusKiB reads a "Key:   123 kB" line of a /proc file, 0 if it cannot.
func statusKiB(file, key string) int64 {
	n, _ := testkit.StatusKiB(file, key)
	return n
}

// countFDs counts a process's descriptors, 0 if it cannot.
func countFDs(pid int) int64 {
	n, _ := testkit.CountFDs(pid)
	return n
}

// sample reads the tree under root. memory says whether to read RSS, PSS
// and fds too (smaps_rollup walks every mapping: not free).
func sample(root int, memory bool) (procSample, error) {
	var s procSample
	if root <= 0 {
		return s, nil
	}
	rf, err := testkit.StatFields(root)
	if err != nil {
		return s, fmt.Errorf("process %d: %w", root, err)
	}
	s.ticks = testkit.Atoi64(rf[13]) + testkit.Atoi64(rf[14]) // root's cutime + cstime
	for _, pid := range tree(root) {
		f, err := testkit.StatFields(pid)
		if err != nil {
			continue // exited meanwhile: its time is in its parent's cutime once reaped
		}
		s.ticks += testkit.Atoi64(f[11]) + testkit.Atoi64(f[12])
		if pid != root {
			s.ticks += testkit.Atoi64(f[13]) + testkit.Atoi64(f[14])
		}
		s.procs++
		if memory {
			s.rssKiB += statusKiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
			s.pssKiB += statusKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss")
			s.fds += countFDs(pid)
		}
	}
	return s, nil
}

// cpuSeconds converts a tick difference to seconds.
func cpuSeconds(a, b procSample) float64 {
	return float64(b.ticks-a.ticks) / float64(clockTicks)
}

// selfCPU is this tool's own CPU time in seconds (all threads).
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// raiseNoFile raises this process's soft RLIMIT_NOFILE to at least want
// (and the hard limit too when it is lower and we may: root), and returns
// the soft limit in force.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		try := lim
		try.Cur, try.Max = want, want
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try) == nil {
			return want, nil
		}
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < want {
		return lim.Cur, errors.New("hard limit " + strconv.FormatUint(lim.Max, 10) + " is below " + strconv.FormatUint(want, 10))
	}
	return lim.Cur, nil
}

// procName is the command name of pid, for the report.
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		return filepath.Base(exe)
	}
	return strings.TrimSpace(string(b))
}
