package testkit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is the kernel's USER_HZ, the unit of utime and stime, read
// from the auxiliary vector (AT_CLKTCK); 100 on every Linux we know of.
var ClockTicks = func() int64 {
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

// StatFields returns the fields of /proc/PID/stat after the command
// name: index 0 is field 3 (state) of proc(5), so field k is index k-3.
func StatFields(pid int) ([]string, error) {
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

// Atoi64 is s as a decimal integer, 0 if it is not one.
func Atoi64(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// CPUTicks is a process's utime+stime (fields 14 and 15 of
// /proc/PID/stat) in clock ticks.
func CPUTicks(pid int) (int64, error) {
	f, err := StatFields(pid)
	if err != nil {
		return 0, err
	}
	return Atoi64(f[11]) + Atoi64(f[12]), nil
}

// CPUTime is a process's user+system CPU time.
func CPUTime(pid int) (time.Duration, error) {
	n, err := CPUTicks(pid)
	return time.Duration(n) * time.Second / time.Duration(ClockTicks), err
}

// StatusKiB reads a "Key:   123 kB" line of a /proc file
// (/proc/PID/status, /proc/PID/smaps_rollup).
func StatusKiB(file, key string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in %s", key, file)
}

// ProcStatusKiB is a field of /proc/PID/status given in kB (VmRSS,
// VmHWM).
func ProcStatusKiB(pid int, key string) (int64, error) {
	return StatusKiB(fmt.Sprintf("/proc/%d/status", pid), key)
}

// CountFDs counts the entries of /proc/PID/fd, in at most 1000 batches
// of 1024.
func CountFDs(pid int) (int64, error) {
	d, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var n int64
	for range 1000 {
		names, err := d.Readdirnames(1024)
		n += int64(len(names))
		if err != nil || len(names) == 0 {
			break
		}
	}
	return n, nil
}

// CountPipes counts a process's pipe descriptors, 0 if it cannot read
// them.
func CountPipes(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}
