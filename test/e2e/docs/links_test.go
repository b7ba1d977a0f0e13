// Package docs checks the repository's Markdown: every relative link in
// README.md and docs/ resolves to a file (and heading) inside the repository.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot walks up from the test's directory to the folder holding go.work.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.work not found above the test directory")
		}
		dir = parent
	}
}

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	fenceRE   = regexp.MustCompile("(?ms)^```.*?^```")
	codeRE    = regexp.MustCompile("`[^`\n]*`")
	slugDrop  = regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
)

// slug is GitHub's heading anchor: lower case, punctuation dropped, spaces to '-'.
func slug(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = slugDrop.ReplaceAllString(h, "")
	return strings.ReplaceAll(h, " ", "-")
}

func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(string(b), ""), -1) {
		s := slug(m[1])
		for i := 0; ; i++ { // GitHub numbers repeated headings: x, x-1, x-2
			k := s
			if i > 0 {
				k = s + "-" + string(rune('0'+i))
			}
			if !out[k] {
				out[k] = true
				break
			}
		}
	}
	return out
}

func TestRelativeLinksResolveInsideTheRepository(t *testing.T) {
	root := repoRoot(t)
	files := []string{filepath.Join(root, "README.md")}
	more, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	files = append(files, more...)
	if len(files) < 2 {
		t.Fatalf("found %d Markdown files, want README.md and docs/*.md", len(files))
	}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := codeRE.ReplaceAllString(fenceRE.ReplaceAllString(string(b), ""), "")
		rel, _ := filepath.Rel(root, f)
		for _, m := range linkRE.FindAllStringSubmatch(text, -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			checked++
			target, frag, _ := strings.Cut(link, "#")
			path := f
			if target != "" {
				path = filepath.Clean(filepath.Join(filepath.Dir(f), target))
			}
			if r, err := filepath.Rel(root, path); err != nil || strings.HasPrefix(r, "..") {
				t.Errorf("%s: link %q leaves the repository (a clone has nothing outside it)", rel, link)
				continue
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Errorf("%s: link %q: %v", rel, link, err)
				continue
			}
			if frag != "" && !st.IsDir() && strings.HasSuffix(path, ".md") && !anchors(t, path)[frag] {
				t.Errorf("%s: link %q: no heading with anchor #%s in %s", rel, link, frag, target)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative links checked: the link pattern is broken")
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Joining the mesh with a proxyless gRPC app": "joining-the-mesh-with-a-proxyless-grpc-app",
		"`weftctl up` and the CLI":                   "weftctl-up-and-the-cli",
		"Control-plane TLS (`pkg/cptls`)":            "control-plane-tls-pkgcptls",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}
