package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// repoRoot is the module's root: this package's tests run in
// cmd/auditlog.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// TestNewcomerDocs holds the README and the repository to what a
// newcomer reads first: the Go version go.mod needs, a link to the
// runnable examples and to the architecture, no link to a file the
// repository lacks, and an Apache-2.0 LICENSE.
func TestNewcomerDocs(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	readme := readFile(t, filepath.Join(root, "README.md"))
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(readFile(t, filepath.Join(root, "go.mod")))
	require.NotNil(t, goVersion)
	require.Contains(t, readme, "Go "+goVersion[1]+" or newer", "the README states the Go version go.mod needs")
	require.Contains(t, readme, "](service/example_test.go)")
	require.Contains(t, readme, "](docs/architecture.md)")
	require.Contains(t, readFile(t, filepath.Join(root, "LICENSE")), "Apache License\n                           Version 2.0")

	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	checked := 0
	for _, doc := range append([]string{filepath.Join(root, "README.md")}, docs...) {
		for _, m := range link.FindAllStringSubmatch(readFile(t, doc), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path := filepath.Join(filepath.Dir(doc), target)
			_, err := os.Stat(path)
			require.NoError(t, err, "%s links %s, which the repository lacks", filepath.Base(doc), target)
			require.NotContains(t, path, "shared", "%s links outside the repository", filepath.Base(doc))
			checked++
		}
	}
	require.Greater(t, checked, 5, "the links were found")
}

// TestMakeTestSaysWhatItDoes: the sqlc notice comes before the first sqlc
// build, make test ends with one summary line either way, and Chromium is
// installed from Debian without its recommended packages, apt's output
// going to a log file rather than the terminal.
func TestMakeTestSaysWhatItDoes(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	out, err := exec.Command("make", "-C", root, "-n", "generate").CombinedOutput()
	require.NoError(t, err, "%s", out)
	notice := strings.Index(string(out), "takes about two minutes")
	build := strings.Index(string(out), "sqlc generate")
	require.True(t, notice >= 0 && build > notice, "the notice comes first:\n%s", out)
	// The test recipe itself (make -n would run it: it calls $(MAKE)).
	makefile := readFile(t, filepath.Join(root, "Makefile"))
	recipe := makefile[strings.Index(makefile, "\ntest:\n"):]
	recipe = recipe[:strings.Index(recipe, "\n\n")]
	require.Contains(t, recipe, `echo "make test: PASS — `)
	require.Contains(t, recipe, `echo "make test: FAIL — `)
	require.Less(t, strings.Index(recipe, "db-check"), strings.Index(recipe, "test -count=1"), "sqlc runs before the tests")

	if os.Getuid() != 0 {
		t.Skip("chromium.sh installs only as root")
	}
	// A PATH with no browser and an apt-get that records its arguments.
	bin := t.TempDir()
	for _, tool := range []string{"id", "tail", "cat"} {
		p, err := exec.LookPath(tool)
		require.NoError(t, err)
		require.NoError(t, os.Symlink(p, filepath.Join(bin, tool)))
	}
	args := filepath.Join(t.TempDir(), "apt-args")
	require.NoError(t, os.WriteFile(filepath.Join(bin, "apt-get"),
		[]byte("#!/bin/sh\necho \"$@\" >> "+args+"\necho 'Reading package lists... Done'\n"), 0o755))
	aptLog := filepath.Join(t.TempDir(), "apt.log")
	bash, err := exec.LookPath("bash")
	require.NoError(t, err)
	cmd := exec.Command(bash, filepath.Join(root, "scripts", "chromium.sh"))
	cmd.Env = []string{"PATH=" + bin, "AUDITLOG_APT_LOG=" + aptLog}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "stderr: %s", stderr.String())
	require.Equal(t, "install -y --no-install-recommends chromium\n", readFile(t, args))
	require.Empty(t, stdout.String())
	require.NotContains(t, stderr.String(), "Reading package lists", "apt's output is not on the terminal")
	require.Contains(t, stderr.String(), aptLog, "the script says where apt's output went")
	require.Contains(t, readFile(t, aptLog), "Reading package lists... Done")
}
