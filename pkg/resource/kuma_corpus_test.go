package resource_test

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/pkg/resource"
)

var update = flag.Bool("update", false, "rewrite the golden canonical forms under testdata/kuma/canonical")

// The Kuma corpus: Kuma's universal-mode examples (0.6 and 1.x docs and
// validator tests), each file naming the source it follows in a
// "# source:" line. They are decoded as "weftctl apply --from-kuma" does.
const corpus = "testdata/kuma"

// eachCorpusFile runs f as a subtest on every file of a corpus folder,
// which must hold at least min.
func eachCorpusFile(t *testing.T, dir string, min int, f func(t *testing.T, name string, doc []byte, h map[string][]string)) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpus, dir, "*.yaml"))
	if err != nil || len(files) < min {
		t.Fatalf("%d examples in %s, want at least %d (%v)", len(files), dir, min, err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			doc, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			f(t, name, doc, header(t, doc))
		})
	}
}

// header reads the "# key: value" comment lines a corpus file starts with.
func header(t *testing.T, doc []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "# ")
		if !ok {
			break
		}
		if k, v, ok := strings.Cut(line, ": "); ok {
			out[k] = append(out[k], v)
		}
	}
	if len(out["source"]) == 0 {
		t.Fatalf("no '# source:' line")
	}
	return out
}

var kumaOpts = resource.DecodeOptions{FromKuma: true}

// TestKumaCorpusValid: every valid example is accepted, normalised to the
// canonical form in testdata/kuma/canonical, and the canonical form reads
// back (without --from-kuma) to the same resource.
func TestKumaCorpusValid(t *testing.T) {
	eachCorpusFile(t, "valid", 60, func(t *testing.T, name string, doc []byte, _ map[string][]string) {
		r, err := kumaOpts.Unmarshal(doc, nil)
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		if err := resource.ValidateWrite(r); err != nil {
			t.Fatalf("invalid: %v", err)
		}
		js, err := resource.MarshalJSON(r)
		if err != nil {
			t.Fatal(err)
		}
		canon, err := yaml.JSONToYAML(js)
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join(corpus, "canonical", name+".yaml")
		if *update {
			if err := os.WriteFile(golden, canon, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		if !bytes.Equal(canon, want) {
			t.Errorf("canonical form differs from %s (go test -update rewrites it):\n%s", golden, canon)
		}
		if bytes.Contains(canon, []byte("kuma.io/")) {
			t.Errorf("canonical form still has kuma.io/ tags:\n%s", canon)
		}
		back, err := resource.Unmarshal(canon, nil)
		if err != nil {
			t.Fatalf("canonical form does not read back: %v\n%s", err, canon)
		}
		if !proto.Equal(back.Spec, r.Spec) || back.Meta.GetType() != r.Meta.GetType() || back.Meta.GetMesh() != r.Meta.GetMesh() {
			t.Errorf("canonical form reads back differently:\n%s", canon)
		}
	})
}

var expectRe = regexp.MustCompile(`^(.*?)(?: \(line (\d+)\))?$`)

// TestKumaCorpusInvalid: every invalid example is refused with exactly the
// field paths its "# expect:" lines name (one cause per problem), at the
// lines given as "(line N)".
func TestKumaCorpusInvalid(t *testing.T) {
	eachCorpusFile(t, "invalid", 40, func(t *testing.T, _ string, doc []byte, h map[string][]string) {
		if len(h["expect"]) == 0 {
			t.Fatal("no '# expect:' line")
		}
		var causes []resource.Cause
		r, err := kumaOpts.Unmarshal(doc, nil)
		if err == nil {
			err = resource.ValidateWrite(r)
		}
		var de *resource.DecodeError
		var ve *resource.ValidationError
		switch {
		case err == nil:
			t.Fatal("accepted")
		case errors.As(err, &de):
			causes = de.AllCauses()
		case errors.As(err, &ve):
			causes = ve.Causes
		default:
			t.Fatalf("not a field-path error: %v", err)
		}
		var got, want []string
		for _, c := range causes {
			if c.Field == "" {
				t.Errorf("cause without a field path: %s", c)
			}
			if strings.Contains(c.Message, "offset") || strings.Contains(c.Message, "proto:") {
				t.Errorf("cause shows decoder internals: %s", c)
			}
			got = append(got, c.Field)
		}
		for _, e := range h["expect"] {
			m := expectRe.FindStringSubmatch(e)
			want = append(want, m[1])
			if m[2] == "" {
				continue
			}
			line, _ := strconv.Atoi(m[2])
			if !slices.ContainsFunc(causes, func(c resource.Cause) bool { return c.Field == m[1] && c.Line == line }) {
				t.Errorf("no cause at %s on line %d: %v", m[1], line, causes)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("field paths\n got %q\nwant %q\n(%v)", got, want, err)
		}
	})
}
