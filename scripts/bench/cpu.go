package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Processor time per load. wrk measures what a load delivers on this machine,
// where Vault, its plugins, the verifier and wrk itself share two cores. The
// processor time Vault (with its plugin processes) spent during a run says what
// a request costs Vault alone: the part a fleet of verifiers on their own hosts
// shares, and the figure to size Vault by.

// userHZ is the unit of the times in /proc/<pid>/stat: USER_HZ, which the
// kernel fixes at 100 for that interface.
const userHZ = 100

// vaultMeter reads the processor time of one Vault server process and of every
// process it has started (its plugins).
type vaultMeter struct{ pid int }

// used is the processor time, user and system, that Vault and its live plugin
// processes have spent so far. A process it cannot read counts as nothing.
func (m vaultMeter) used() time.Duration {
	total := procCPU(m.pid)
	for _, pid := range childrenOf(m.pid) {
		total += procCPU(pid)
	}
	return total
}

// procCPU is the processor time of pid (0 when it cannot be read).
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	st, err := parseStat(string(raw))
	if err != nil {
		return 0
	}
	return st.cpu
}

// childrenOf lists the processes whose parent is ppid.
func childrenOf(ppid int) []int {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue // ended meanwhile
		}
		st, err := parseStat(string(raw))
		if err == nil && st.ppid == ppid {
			out = append(out, st.pid)
		}
	}
	return out
}

type procStat struct {
	pid, ppid int
	cpu       time.Duration
}

// parseStat reads a /proc/<pid>/stat line: "pid (comm) state ppid … utime
// stime …". The command name may hold spaces and parentheses, so the fields
// are counted from the last ")".
func parseStat(line string) (procStat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 1 || end < open {
		return procStat{}, fmt.Errorf("not a /proc stat line")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("stat pid: %w", err)
	}
	f := strings.Fields(line[end+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("stat line has %d fields after the name, want 13 or more", len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseInt(f[11], 10, 64)
	stime, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, fmt.Errorf("stat fields are not numbers")
	}
	return procStat{pid: pid, ppid: ppid, cpu: time.Duration(utime+stime) * time.Second / userHZ}, nil
}

// perRequest is cpu spread over n requests ("" when nothing was measured).
func perRequest(cpu time.Duration, n int64) string {
	if cpu <= 0 || n <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f µs", float64(cpu.Microseconds())/float64(n))
}
