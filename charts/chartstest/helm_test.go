package chartstest

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", os.Getenv("UPDATE") == "1", "rewrite golden files and re-sync shared chart files")

// Release name and namespace of every render (golden files depend on them).
const (
	releaseName = "weft"
	namespace   = "weft-system"
)

// serviceCharts are the per-deployable charts; umbrella installs them.
// (ingress-manager and k8s-controller get a chart, Dockerfile and unit when
// their code lands, with every check below from the start.)
var serviceCharts = []string{"api-server", "ca-service", "xds-server", "dns-server", "zone-sync", "ingress-manager"}

const umbrella = "weft"

// library is the library chart of the weft.* helpers every service chart
// depends on (file://../weft-lib); it renders nothing of its own.
const library = "weft-lib"

func allCharts() []string { return append(append([]string{}, serviceCharts...), umbrella) }

// repoRoot is the workspace root (this module lives in charts/chartstest).
func repoRoot(t testing.TB) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(abs, "charts", umbrella, "Chart.yaml")); err != nil {
		t.Fatalf("repo root not found from %s: %v", abs, err)
	}
	return abs
}

func chartsDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts") }

// helmPath finds helm: $HELM, the cache dir charts/test.sh installs into, PATH.
func helmPath() string {
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	cache := os.Getenv("WEFT_CACHE")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "weft")
		}
	}
	if cache != "" {
		p := filepath.Join(cache, "bin", "helm")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	return ""
}

func needHelm(t testing.TB) string {
	t.Helper()
	h := helmPath()
	if h == "" {
		t.Skip("helm not found: set $HELM, or run charts/test.sh (installs helm into ${WEFT_CACHE:-$HOME/.cache/weft}/bin); chart checks SKIPPED")
	}
	return h
}

var (
	prepOnce sync.Once
	prepDir  string
	prepErr  error
)

// preparedCharts copies charts/ to a temporary directory and vendors every
// chart's file:// dependencies there (offline) with `helm dependency build`,
// (charts/deps.sh), as a user does after a clone, leaving the worktree as it
// is. The copy is shared by every test of the run.
func preparedCharts(t testing.TB) string {
	t.Helper()
	helm := needHelm(t)
	src := chartsDir(t)
	prepOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weft-charts-")
		if err != nil {
			prepErr = err
			return
		}
		prepDir = dir
		for _, c := range append(allCharts(), library) {
			if err := copyChart(filepath.Join(src, c), filepath.Join(dir, c)); err != nil {
				prepErr = err
				return
			}
		}
		// charts/deps.sh, as a user runs it after a clone: the service
		// charts first, then the umbrella packages them with their weft-lib.
		cmd := exec.Command("bash", filepath.Join(src, "deps.sh"), dir)
		cmd.Env = append(helmEnv(), "HELM="+helm)
		if out, err := cmd.CombinedOutput(); err != nil {
			prepErr = fmt.Errorf("charts/deps.sh: %v\n%s", err, out)
		}
	})
	if prepErr != nil {
		t.Fatal(prepErr)
	}
	return prepDir
}

// copyChart copies a chart directory without vendored charts/ or testdata/.
func copyChart(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && (rel == "charts" || rel == "testdata") {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

func runHelm(helm string, args ...string) (string, error) {
	cmd := exec.Command(helm, args...)
	cmd.Env = helmEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// helmEnv: no repositories, no registry config from the user's machine
// (offline).
func helmEnv() []string {
	tmp := os.TempDir()
	return append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(tmp, "weft-helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmp, "weft-helm-config"),
		"HELM_DATA_HOME="+filepath.Join(tmp, "weft-helm-data"),
	)
}

// valuesCase is one values file a chart is checked with.
type valuesCase struct {
	name string // default, global, zone, ha
	file string // "" for the chart's defaults
}

// valuesCases lists the default values plus charts/<chart>/ci/*-values.yaml.
func valuesCases(t testing.TB, chart string) []valuesCase {
	t.Helper()
	cases := []valuesCase{{name: "default"}}
	files, err := filepath.Glob(filepath.Join(chartsDir(t), chart, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	for _, f := range files {
		cases = append(cases, valuesCase{name: strings.TrimSuffix(filepath.Base(f), "-values.yaml"), file: f})
	}
	return cases
}

func helmTemplate(t testing.TB, chart string, valuesFiles ...string) (string, error) {
	t.Helper()
	helm := needHelm(t)
	args := []string{"template", releaseName, filepath.Join(preparedCharts(t), chart), "--namespace", namespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	return runHelm(helm, args...)
}

func helmLint(t testing.TB, chart string, valuesFiles ...string) (string, error) {
	t.Helper()
	helm := needHelm(t)
	args := []string{"lint", "--strict", filepath.Join(preparedCharts(t), chart), "--namespace", namespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	return runHelm(helm, args...)
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if prepDir != "" {
		os.RemoveAll(prepDir)
	}
	os.Exit(code)
}
