package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// clockTicks is the kernel's USER_HZ, the unit of utime and stime, read
// from the auxiliary vector (AT_CLKTCK); 100 on every Linux we know of.
var clockTicks = func() int64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	const atClkTck = 17
	for len(b) >= 16 {
		k, v := binary.NativeEndian.Uint64(b), binary.NativeEndian.Uint64(b[8:])
		b = b[16:]
		if k == atClkTck && v > 0 {
			return int64(v)
		}
		if k == 0 {
			break
		}
	}
	return 100
}()

// statFields returns the fields of /proc/PID/stat after the command
// name: index 0 is field 3 (state) of proc(5), so field k is index k-3.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

func atoi64(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// tree returns root and all its descendants, root first.
func tree(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		f, err := statFields(pid)
		if err != nil {
			continue
		}
		ppid := int(atoi64(f[1]))
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out) && len(out) < 100000; i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// statusKiB reads a "Key:   123 kB" line of a /proc file.
func statusKiB(file, key string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return atoi64(f[0])
			}
		}
	}
	return 0
}

func countFDs(pid int) int64 {
	d, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	defer d.Close()
	var n int64
	for range 1000 { // at most 1000 batches of 1024: bounded
		names, err := d.Readdirnames(1024)
		n += int64(len(names))
		if err != nil || len(names) == 0 {
			break
		}
	}
	return n
}

// sample reads the tree under root. memory says whether to read RSS, PSS
// and fds too (smaps_rollup walks every mapping: not free).
func sample(root int, memory bool) (procSample, error) {
	var s procSample
	if root <= 0 {
		return s, nil
	}
	rf, err := statFields(root)
	if err != nil {
		return s, fmt.Errorf("process %d: %w", root, err)
	}
	s.ticks = atoi64(rf[13]) + atoi64(rf[14]) // root's cutime + cstime
	for _, pid := range tree(root) {
		f, err := statFields(pid)
		if err != nil {
			continue // exited meanwhile: its time is in its parent's cutime once reaped
		}
		s.ticks += atoi64(f[11]) + atoi64(f[12])
		if pid != root {
			s.ticks += atoi64(f[13]) + atoi64(f[14])
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
