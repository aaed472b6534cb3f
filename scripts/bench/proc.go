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
// helpers): CPU time (in clock ticks, and exact from the proxy's cgroup
// when it has one), resident and proportional set size, open file
// descriptors.
type procSample struct {
	ticks int64 // utime+stime of the tree, plus the root's cutime+cstime (reaped children)
	// cpuNs is the CPU time of the proxy's cgroup in nanoseconds, when it
	// runs in one (-cgroup); cgroup says it was read.
	cpuNs  int64
	cgroup bool
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

// sample reads the tree under root, and the CPU time of the cgroup cg
// unless it is "". memory says whether to read RSS, PSS and fds too
// (smaps_rollup walks every mapping: not free).
func sample(root int, cg string, memory bool) (procSample, error) {
	var s procSample
	if root <= 0 {
		return s, nil
	}
	if cg != "" {
		ns, err := cgroupCPU(cg)
		if err != nil {
			return s, err
		}
		s.cpuNs, s.cgroup = ns, true
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

// cpuSeconds is the CPU time between two samples: the cgroup's when both
// read it, else the clock ticks'.
func cpuSeconds(a, b procSample) float64 {
	if a.cgroup && b.cgroup {
		return float64(b.cpuNs-a.cpuNs) / 1e9
	}
	return float64(b.ticks-a.ticks) / float64(clockTicks)
}

// cgroupCPU reads the CPU time of every task that ever ran in the cgroup
// dir, in nanoseconds: cpuacct.usage on cgroup v1, usage_usec of cpu.stat
// on v2. Unlike /proc's utime and stime, which count in clock ticks of
// 10 ms (two ticks are 8% of a 1 GiB single-stream run here), it is exact,
// and it keeps the time of threads and children that have exited.
func cgroupCPU(dir string) (int64, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil {
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: neither cpuacct.usage nor cpu.stat: %w", dir, err)
	}
	return parseUsageUsec(string(b))
}

// inCgroup checks that pid runs in the cgroup dir: CPU read from a
// cgroup the proxy is not in would be someone else's.
func inCgroup(dir string, pid int) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return err
	}
	want := strconv.Itoa(pid)
	for f := range strings.FieldsSeq(string(b)) {
		if f == want {
			return nil
		}
	}
	return fmt.Errorf("process %d is not in cgroup %s", pid, dir)
}

// parseUsageUsec finds usage_usec in a cgroup v2 cpu.stat, in nanoseconds.
func parseUsageUsec(stat string) (int64, error) {
	for line := range strings.Lines(stat) {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return us * 1000, err
		}
	}
	return 0, errors.New("cpu.stat has no usage_usec")
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
