package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// portHolder returns the pid of a process with a listening TCP socket on
// addr's port, and whether it is a ferry (its executable is this one's,
// or its name is ferry); pid 0 when it cannot find one. It reads the
// kernel's socket tables and open files under /proc (Linux; processes of
// other users are not visible unless run as root). /proc/self/net is
// read rather than /proc/net, which systemd's ProcSubset=pid hides.
func portHolder(addr string) (pid int, ferry bool) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0, false
	}
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		// sl local_address rem_address st ... inode
		//  0: 0100007F:1F90 00000000:0000 0A ... 12345
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // TCP_LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if n, err := strconv.ParseUint(hexPort, 16, 16); err == nil && n == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, false
	}
	self, _ := os.Executable()
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if err == nil && inodes[link] {
				return pid, isFerry(pid, self)
			}
		}
	}
	return 0, false
}

// isFerry reports whether process pid runs the executable self, or one
// named ferry.
func isFerry(pid int, self string) bool {
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && self != "" && exe == self {
		return true
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == "ferry"
}
