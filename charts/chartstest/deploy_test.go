package chartstest

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// dockerInstr is one Dockerfile instruction with continuation lines joined.
type dockerInstr struct {
	cmd  string
	args string
}

func parseDockerfile(t *testing.T, path string) []dockerInstr {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstr
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		f := strings.SplitN(cur.String(), " ", 2)
		in := dockerInstr{cmd: strings.ToUpper(f[0])}
		if len(f) > 1 {
			in.args = strings.TrimSpace(f[1])
		}
		out = append(out, in)
		cur.Reset()
	}
	return out
}

// chartPorts reads ports: from a chart's values.yaml.
func chartPorts(t *testing.T, svc string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartsDir(t), svc, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Ports map[string]int `json:"ports"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v.Ports
}

var replaceRE = regexp.MustCompile(`(?m)^\s*(?:replace\s+)?\S+\s+=>\s+\.\./([A-Za-z0-9_./-]+)\s*$`)

// TestDockerfiles checks each deploy/docker/<svc>.Dockerfile: the paths it
// copies exist, it copies every sibling module the service's go.mod replaces,
// it builds the service's main package with CGO_ENABLED=0, and the final
// image is distroless/static running as non-root, exposing the chart's ports.
func TestDockerfiles(t *testing.T) {
	root := repoRoot(t)
	for _, svc := range serviceCharts {
		t.Run(svc, func(t *testing.T) {
			path := filepath.Join(root, "deploy", "docker", svc+".Dockerfile")
			ins := parseDockerfile(t, path)
			argDefaults := map[string]string{}
			var copied []string
			var froms, users, exposes []string
			var env, run string
			for _, in := range ins {
				switch in.cmd {
				case "ARG":
					if k, v, ok := strings.Cut(in.args, "="); ok {
						argDefaults[k] = v
					}
				case "FROM":
					froms = append(froms, os.Expand(strings.Fields(strings.ReplaceAll(in.args, "--platform=$BUILDPLATFORM ", ""))[0], func(k string) string { return argDefaults[k] }))
				case "COPY":
					if strings.Contains(in.args, "--from=") {
						continue
					}
					f := strings.Fields(in.args)
					for _, src := range f[:len(f)-1] {
						if strings.HasPrefix(src, "--") {
							continue
						}
						matches, _ := filepath.Glob(filepath.Join(root, src))
						if len(matches) == 0 {
							t.Errorf("COPY %s: no such path in the repository", src)
						}
						copied = append(copied, strings.TrimSuffix(src, "/"))
					}
				case "USER":
					users = append(users, in.args)
				case "EXPOSE":
					exposes = append(exposes, strings.Fields(in.args)...)
				case "ENV":
					env += in.args + " "
				case "RUN":
					run += in.args + "\n"
				}
			}
			if !strings.Contains(env, "CGO_ENABLED=0") {
				t.Error("ENV must set CGO_ENABLED=0")
			}
			if len(froms) < 2 {
				t.Fatalf("want a multi-stage build, got FROM %v", froms)
			}
			final := froms[len(froms)-1]
			if !strings.Contains(final, "distroless/static") || !strings.HasSuffix(final, ":nonroot") {
				t.Errorf("final image %q: want distroless/static ...:nonroot", final)
			}
			if len(users) == 0 || slices.ContainsFunc(users, func(u string) bool { return u == "root" || u == "0" || strings.HasPrefix(u, "0:") }) {
				t.Errorf("USER %v: want a non-root user", users)
			}
			m := regexp.MustCompile(`cd (\S+) && .*go build .*-o (\S+) (\./\S+)`).FindStringSubmatch(strings.ReplaceAll(run, "\n", " "))
			if m == nil {
				t.Fatalf("no `cd <module> && ... go build -o <out> ./<pkg>` in RUN:\n%s", run)
			}
			if m[1] != svc || m[3] != "./cmd/"+svc {
				t.Errorf("builds %s in %s, want ./cmd/%s in %s", m[3], m[1], svc, svc)
			}
			if _, err := os.Stat(filepath.Join(root, m[1], m[3], "main.go")); err != nil {
				t.Errorf("build target: %v", err)
			}
			gomod, err := os.ReadFile(filepath.Join(root, svc, "go.mod"))
			if err != nil {
				t.Fatal(err)
			}
			need := []string{svc}
			for _, r := range replaceRE.FindAllStringSubmatch(string(gomod), -1) {
				need = append(need, strings.TrimSuffix(r[1], "/"))
			}
			for _, n := range need {
				if !slices.Contains(copied, n) {
					t.Errorf("%s/go.mod needs ../%s but the Dockerfile does not COPY %s/", svc, n, n)
				}
			}
			// A service's module needs only pkg and proto: cross-service
			// tests live in test/e2e, not in a service's go.mod.
			for _, n := range need {
				if n != svc && n != "pkg" && n != "proto" {
					t.Errorf("%s/go.mod replaces ../%s: a service module may depend only on pkg and proto (move cross-service tests to test/e2e)", svc, n)
				}
			}
			for _, c := range copied {
				if top, _, _ := strings.Cut(c, "/"); !slices.Contains(need, top) {
					t.Errorf("COPY %s: the build does not need it (want only %s/, pkg/ and proto/)", c, svc)
				}
			}
			var want []string
			for name, p := range chartPorts(t, svc) {
				if name == "dns" {
					want = append(want, fmt.Sprintf("%d/udp", p), fmt.Sprintf("%d/tcp", p))
				} else {
					want = append(want, fmt.Sprint(p))
				}
			}
			sort.Strings(want)
			sort.Strings(exposes)
			if !slices.Equal(want, exposes) {
				t.Errorf("EXPOSE %v, chart ports %v", exposes, want)
			}
			ignore, err := os.ReadFile(path + ".dockerignore")
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(ignore), "\n") {
				if p, ok := strings.CutPrefix(strings.TrimSpace(l), "!"); ok {
					if _, err := os.Stat(filepath.Join(root, p)); err != nil {
						t.Errorf("%s.dockerignore: %s: %v", svc, l, err)
					}
					if !slices.Contains(need, strings.TrimSuffix(p, "/")) {
						t.Errorf("%s.dockerignore re-includes %s, which the build does not need", svc, p)
					}
				}
			}
			for _, n := range need {
				if !strings.Contains(string(ignore), "!"+n+"/") {
					t.Errorf("%s.dockerignore excludes %s/, which the build needs", svc, n)
				}
			}
		})
	}
}

// unit is a systemd unit or env file: key → values.
type unit map[string][]string

func parseKV(t *testing.T, path string, commented bool) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if commented {
			l = strings.TrimPrefix(l, "#")
		}
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.Contains(k, " ") {
			continue
		}
		u[k] = append(u[k], v)
	}
	return u
}

// envPrefix is WEFT_<SERVICE>_ as pkg/config.EnvName spells it.
func envPrefix(svc string) string {
	return "WEFT_" + strings.ToUpper(strings.ReplaceAll(svc, "-", "_")) + "_"
}

// envFlags maps an env file's WEFT_<SVC>_<FLAG> keys (commented examples
// included) to flag names.
func envFlags(t *testing.T, svc string) []string {
	t.Helper()
	var flags []string
	for k := range parseKV(t, filepath.Join(repoRoot(t), "deploy", "systemd", svc+".env"), true) {
		if name, ok := strings.CutPrefix(k, envPrefix(svc)); ok {
			flags = append(flags, strings.ReplaceAll(strings.ToLower(name), "_", "-"))
		}
	}
	sort.Strings(flags)
	return flags
}

// TestSystemdUnits checks deploy/systemd/weft-<svc>.service and <svc>.env,
// and runs systemd-analyze verify where it exists.
func TestSystemdUnits(t *testing.T) {
	root := repoRoot(t)
	analyze, _ := exec.LookPath("systemd-analyze")
	for _, svc := range serviceCharts {
		t.Run(svc, func(t *testing.T) {
			path := filepath.Join(root, "deploy", "systemd", "weft-"+svc+".service")
			u := parseKV(t, path, false)
			want := map[string]string{
				"ExecStart":       "/usr/local/bin/" + svc,
				"EnvironmentFile": "/etc/weft/" + svc + ".env",
				"User":            "weft",
				"NoNewPrivileges": "yes",
				"ProtectSystem":   "strict",
				"Restart":         "always",
				"WantedBy":        "multi-user.target",
			}
			for k, v := range want {
				if !slices.Contains(u[k], v) {
					t.Errorf("%s=%v, want %s", k, u[k], v)
				}
			}
			env := parseKV(t, filepath.Join(root, "deploy", "systemd", svc+".env"), false)
			if len(env) == 0 {
				t.Error("env file sets nothing")
			}
			for k := range env {
				if !strings.HasPrefix(k, envPrefix(svc)) && !strings.HasPrefix(k, "OTEL_") && k != "WEFT_ENCRYPTION_KEYS" {
					t.Errorf("env file: %s is not %s<FLAG>, OTEL_* or WEFT_ENCRYPTION_KEYS", k, envPrefix(svc))
				}
			}
			if analyze == "" {
				t.Log("systemd-analyze not found: unit syntax not verified")
				return
			}
			// verify needs an executable ExecStart: point it at a stub.
			dir := t.TempDir()
			stub := filepath.Join(dir, svc)
			if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			text := strings.ReplaceAll(string(data), "ExecStart=/usr/local/bin/"+svc, "ExecStart="+stub)
			tmp := filepath.Join(dir, "weft-"+svc+".service")
			if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", "--man=no", tmp).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
		})
	}
}

// TestStaticBinaries builds every service with CGO_ENABLED=0, checks
// the ELF has no interpreter and no shared libraries, and that every flag
// the charts and the systemd env files pass exists in the binary.
func TestStaticBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds every service")
	}
	root := repoRoot(t)
	var pkgs, svcs []string
	for _, svc := range serviceCharts {
		pkgs = append(pkgs, "./"+svc+"/cmd/"+svc)
		svcs = append(svcs, svc)
	}
	out := t.TempDir()
	cmd := exec.Command("go", append([]string{"build", "-o", out + string(os.PathSeparator)}, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build %v: %v\n%s", pkgs, err, b)
	}
	chartFlags := renderedFlags(t)
	for _, svc := range svcs {
		t.Run(svc, func(t *testing.T) {
			bin := filepath.Join(out, svc)
			checkStaticELF(t, bin)
			have := binaryFlags(t, bin)
			for _, f := range chartFlags[svc] {
				if !have[f] {
					t.Errorf("the %s chart passes --%s, which %s does not define (flags: %v)", svc, f, svc, keys(have))
				}
			}
			for _, f := range envFlags(t, svc) {
				if !have[f] {
					t.Errorf("deploy/systemd/%s.env sets %s%s, but %s has no --%s", svc, envPrefix(svc), strings.ToUpper(strings.ReplaceAll(f, "-", "_")), svc, f)
				}
			}
		})
	}
}

func checkStaticELF(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter (PT_INTERP): dynamically linked", filepath.Base(path))
		}
		if p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a PT_DYNAMIC segment", filepath.Base(path))
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", filepath.Base(path), libs)
	}
}

var flagLineRE = regexp.MustCompile(`^\s+-{1,2}([a-zA-Z0-9][a-zA-Z0-9._-]*)`)

// binaryFlags runs `<bin> -h` and collects the flags of Go's flag usage.
func binaryFlags(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin, "-h").CombinedOutput() // -h exits non-zero
	flags := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if m := flagLineRE.FindStringSubmatch(l); m != nil {
			flags[m[1]] = true
		}
	}
	if len(flags) == 0 {
		t.Fatalf("%s -h printed no flags:\n%s", filepath.Base(bin), out)
	}
	return flags
}

// renderedFlags renders every chart with every values case and returns,
// per container name, the --flags its args use.
func renderedFlags(t *testing.T) map[string][]string {
	t.Helper()
	if helmPath() == "" {
		t.Log("helm not found: chart flags not checked against the binaries")
		return nil
	}
	flags := map[string]map[string]bool{}
	for _, chart := range allCharts() {
		for _, vc := range valuesCases(t, chart) {
			var files []string
			if vc.file != "" {
				files = append(files, vc.file)
			}
			render, err := helmTemplate(t, chart, files...)
			if err != nil {
				t.Fatalf("helm template %s %s: %v\n%s", chart, vc.name, err, render)
			}
			objs, err := decodeStrict(render)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				var cs []corev1.Container
				switch v := o.obj.(type) {
				case *appsv1.Deployment:
					cs = v.Spec.Template.Spec.Containers
				default:
					continue
				}
				for _, c := range cs {
					for _, a := range c.Args {
						name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
						if strings.HasPrefix(a, "-") {
							if flags[c.Name] == nil {
								flags[c.Name] = map[string]bool{}
							}
							flags[c.Name][name] = true
						}
					}
				}
			}
		}
	}
	out := map[string][]string{}
	for c, m := range flags {
		out[c] = keys(m)
	}
	return out
}

func keys(m map[string]bool) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// TestConnectedProxiesMetric: the gauge the xds-server HPA scales on is one
// the xds-server exports.
func TestConnectedProxiesMetric(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartsDir(t), "xds-server", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Autoscaling struct {
			ConnectedProxies struct {
				MetricName string `json:"metricName"`
			} `json:"connectedProxies"`
		} `json:"autoscaling"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	name := v.Autoscaling.ConnectedProxies.MetricName
	found := false
	err = filepath.WalkDir(filepath.Join(repoRoot(t), "xds-server"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		src, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(src), `"`+name+`"`) {
			found = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("autoscaling.connectedProxies.metricName %q: no xds-server source defines it", name)
	}
}

// TestDockerfileContext replays each Dockerfile's build-stage COPYs
// into an empty directory and loads the service's main package there with
// GOWORK=off, as the image build does: the copied modules must be enough
// (module graph, go.sum, every imported package). No Docker engine needed.
func TestDockerfileContext(t *testing.T) {
	root := repoRoot(t)
	for _, svc := range serviceCharts {
		t.Run(svc, func(t *testing.T) {
			dst := t.TempDir()
			for _, in := range parseDockerfile(t, filepath.Join(root, "deploy", "docker", svc+".Dockerfile")) {
				if in.cmd != "COPY" || strings.Contains(in.args, "--from=") {
					continue
				}
				f := strings.Fields(in.args)
				for _, src := range f[:len(f)-1] {
					matches, _ := filepath.Glob(filepath.Join(root, src))
					for _, m := range matches {
						rel, _ := filepath.Rel(root, m)
						if err := copyTree(m, filepath.Join(dst, rel)); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			// The image's first layer runs `go mod download`: the whole
			// module graph, replaced sibling modules included, must load.
			dl := exec.Command("go", "mod", "download")
			dl.Dir = filepath.Join(dst, svc)
			dl.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
			if out, err := dl.CombinedOutput(); err != nil {
				t.Fatalf("go mod download in the Dockerfile's context: %v\n%s", err, out)
			}
			// The module graph names no other service module.
			graph := exec.Command("go", "mod", "graph")
			graph.Dir = filepath.Join(dst, svc)
			graph.Env = dl.Env
			gout, err := graph.CombinedOutput()
			if err != nil {
				t.Fatalf("go mod graph in the Dockerfile's context: %v\n%s", err, gout)
			}
			seen := map[string]bool{}
			for _, f := range strings.Fields(string(gout)) {
				mod, _, _ := strings.Cut(f, "@")
				if rest, ok := strings.CutPrefix(mod, "github.com/weftmesh/weft/"); ok && rest != svc && rest != "pkg" && rest != "proto" && !seen[mod] {
					seen[mod] = true
					t.Errorf("go mod graph of %s names %s: a service module may depend only on pkg and proto", svc, mod)
				}
			}
			cmd := exec.Command("go", "list", "-mod=readonly", "-e", "-deps", "-f", "{{with .Error}}{{.}}{{end}}", "./cmd/"+svc)
			cmd.Dir = filepath.Join(dst, svc)
			cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=readonly")
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("go list ./cmd/%s in the Dockerfile's context: %v\n%s", svc, err, out)
			}
		})
	}
}

// copyTree copies a file or directory (skipping testdata, like the
// .dockerignore files).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}
