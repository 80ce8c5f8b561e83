package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// memoryResult is one sub-benchmark of verifier/memory_bench_test.go: a key
// shape and its metrics by unit (heap-bytes/key, rss-bytes/key, MB-rss).
type memoryResult struct {
	shape   string
	metrics map[string]float64
}

var benchLine = regexp.MustCompile(`^BenchmarkCacheMillionKeys(?:/(\S+?))?(?:-\d+)?\s+\d+\s+(.*)$`)

// memoryBench runs the verifier's cache memory benchmark (the real decode,
// open and insert path) with n keys per shape and returns its metrics.
func memoryBench(n int) ([]memoryResult, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkCacheMillionKeys$", "-benchtime", "1x", "-count", "1",
		"./verifier/", "-args", "-memory-keys", strconv.Itoa(n))
	cmd.Dir = vaulttest.Root()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test (memory): %v\n%s", err, out)
	}
	var res []memoryResult
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		r := memoryResult{shape: m[1], metrics: map[string]float64{}}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				r.metrics[f[i+1]] = v
			}
		}
		res = append(res, r)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("no BenchmarkCacheMillionKeys line in:\n%s", out)
	}
	fmt.Fprintf(os.Stderr, "bench:   memory: %d shapes measured\n", len(res))
	return res, nil
}
