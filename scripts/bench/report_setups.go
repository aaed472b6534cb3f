package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// setup is how one proxy ran: a label, its command line and its
// configuration file as bench.sh wrote it.
type setup struct {
	label, command, config string
}

// maxSetupBytes bounds a setup file: a configuration, not a data file.
const maxSetupBytes = 64 << 10

// readSetups reads the setup files of dir, in the order of their
// names: the first line is the label, the second the command, the rest
// the configuration (may be empty).
func readSetups(dir string) ([]setup, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("setups: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []setup
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("setups: %w", err)
		}
		if len(b) > maxSetupBytes {
			return nil, fmt.Errorf("setups: %s: over %d bytes", n, maxSetupBytes)
		}
		label, rest, _ := strings.Cut(string(b), "\n")
		command, config, _ := strings.Cut(rest, "\n")
		out = append(out, setup{strings.TrimSpace(label), strings.TrimSpace(command), strings.TrimRight(config, "\n")})
	}
	return out, nil
}

// writeSetups writes how each proxy ran, a subsection each.
func (rs *results) writeSetups(w io.Writer) {
	if len(rs.setups) == 0 {
		return
	}
	fmt.Fprintf(w, "## How each proxy ran\n\n")
	fmt.Fprintf(w, "Each peer runs as its users would tune it for speed: no per-connection logging (off, or errors only to a file), no cache, one process or thread where it has the choice; ferry runs with its access log (`ferry`) and without (`ferry+nolog`). ")
	fmt.Fprintf(w, "The command lines and files below are those of this run, as `scripts/bench.sh` wrote them (`$WORK` is the run's temporary directory).\n\n")
	for _, s := range rs.setups {
		fmt.Fprintf(w, "### %s\n\n`%s`\n\n", s.label, strings.ReplaceAll(s.command, "`", "'"))
		if s.config != "" {
			fmt.Fprintf(w, "```\n%s\n```\n\n", strings.ReplaceAll(s.config, "```", "'''"))
		}
	}
}
