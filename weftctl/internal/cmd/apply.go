package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/weftctl/internal/client"
)

const applyUsage = `Usage:
  weftctl apply -f FILE|DIR|- [-f ...] [--dry-run [--explain]] [--from-kuma]

Creates or updates the resources in multi-document YAML ("---" separated) or
JSON (one object or an array). Every document is decoded and validated before
anything is sent; on any problem nothing is applied. Meshes are applied first,
then the rest in file order. For each resource it prints
"created|updated|unchanged TYPE [MESH/]NAME". A "version" in a document makes
that update conditional: it fails with a conflict if the resource changed since.

--dry-run only decodes and validates, prints the resources as they would be
sent (YAML), and contacts no control plane.

--dry-run --explain sends each policy as a dry run (PUT ...?dryRun=explain):
the control plane validates it as a write, stores nothing, and answers which
Dataplanes it would match, which policy it would override for each, and per
proxy the generated xDS resources it would add, change or remove (computed by
the xds-server's generator). Resources that are not policies are only
validated.

Kuma's universal YAML shapes are always accepted and normalised (see
docs/kuma-compatibility.md); --from-kuma also rewrites Kuma's tag keys
(kuma.io/service, kuma.io/protocol, ...) to Weft's (weft.io/...).
'weftctl convert --from-kuma FILE' prints what would be applied.

Examples:
  weftctl apply -f mesh.yaml -f dataplanes/
  cat dp.yaml | weftctl apply -f -
  weftctl get dp web-1 -o yaml | sed s/8080/8081/ | weftctl apply -f -
  weftctl apply -f policies.yaml --dry-run
  weftctl apply -f route.yaml --dry-run --explain
  weftctl apply --from-kuma -f kuma-resources.yaml`

func applyCommand() *Command {
	return &Command{Name: "apply", Summary: "Create or update resources from YAML/JSON files", Run: runApply}
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// input is one decoded resource and where it came from.
type input struct {
	source string
	res    *resource.Resource
}

func runApply(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("apply")
	var files stringsFlag
	fs.Var(&files, "f", "`FILE`, directory (its *.yaml, *.yml, *.json) or - for stdin; repeatable")
	fs.Var(&files, "file", "`FILE`: same as -f")
	dryRun := fs.Bool("dry-run", false, "validate and print the resources without applying them")
	fromKuma := fs.Bool("from-kuma", false, "rewrite Kuma's kuma.io/ tag keys to weft.io/")
	explain := fs.Bool("explain", false, "with --dry-run: ask the control plane what each policy would match, override and change (stores nothing)")
	pos, err := a.Parse(fs, applyUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("apply takes no arguments; give files with -f (got %q)", pos[0])
	}
	if len(files) == 0 {
		return usageErrorf("apply needs -f FILE (or -f - for stdin)")
	}
	if *explain && !*dryRun {
		return usageErrorf("--explain goes with --dry-run")
	}
	inputs, err := a.readValidInputs(files, resource.DecodeOptions{FromKuma: *fromKuma})
	if err != nil {
		return err
	}
	if *explain {
		return a.explainInputs(ctx, inputs)
	}
	if *dryRun {
		if err := a.printInputs(inputs); err != nil {
			return err
		}
		fmt.Fprintf(a.Stderr, "%d resource(s) valid; nothing applied (dry run)\n", len(inputs))
		return nil
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	failed := 0
	for _, in := range inputs {
		r := in.res
		t := r.Type()
		name := displayName(r.Meta.GetMesh(), r.Meta.GetName())
		result, err := applyOne(ctx, c, r)
		if err != nil {
			failed++
			a.PrintError(fmt.Errorf("apply %s %s (%s): %w", t.Name, name, in.source, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		fmt.Fprintf(a.Stdout, "%s %s %s\n", result, t.Name, name)
	}
	if failed > 0 {
		fmt.Fprintf(a.Stderr, "%d of %d resource(s) failed\n", failed, len(inputs))
		return errReported
	}
	return nil
}

// applyOne creates or updates r and says which, or "unchanged" if the
// control plane already holds the same spec and labels.
func applyOne(ctx context.Context, c *client.Client, r *resource.Resource) (string, error) {
	t := r.Type()
	cur, err := c.Get(ctx, t, r.Meta.GetMesh(), r.Meta.GetName())
	switch {
	case err == nil:
		if cur.Spec != nil && proto.Equal(cur.Spec, r.Spec) && maps.Equal(cur.Meta.GetLabels(), r.Meta.GetLabels()) {
			return "unchanged", nil
		}
	case client.IsNotFound(err):
	default:
		return "", err
	}
	res, err := c.Put(ctx, r)
	if err != nil {
		return "", err
	}
	return res.String(), nil
}

// readValidInputs decodes and validates every file (printing every
// problem), meshes first: everything else in a mesh needs it to exist.
func (a *App) readValidInputs(files []string, opts resource.DecodeOptions) ([]input, error) {
	inputs, err := a.readInputs(files, opts)
	if err != nil {
		return nil, err
	}
	if len(inputs) == 0 {
		return nil, errors.New("no resources found in the input")
	}
	if !a.validateInputs(inputs) {
		return nil, errReported
	}
	sort.SliceStable(inputs, func(i, j int) bool {
		return inputs[i].res.Type() == resource.MeshType && inputs[j].res.Type() != resource.MeshType
	})
	return inputs, nil
}

// printInputs prints resources as "---"-separated YAML in the canonical form.
func (a *App) printInputs(inputs []input) error {
	for i, in := range inputs {
		js, err := resource.MarshalJSON(in.res)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(a.Stdout, "---")
		}
		if err := writeYAML(a.Stdout, js); err != nil {
			return err
		}
	}
	return nil
}

// readInputs decodes every file; the first unreadable or undecodable
// document stops everything.
func (a *App) readInputs(files []string, opts resource.DecodeOptions) ([]input, error) {
	var out []input
	stdinUsed := false
	for _, f := range files {
		if f == "-" {
			if stdinUsed {
				return nil, usageErrorf("-f - (stdin) can be given only once")
			}
			stdinUsed = true
			res, err := opts.UnmarshalAll(a.Stdin)
			if err != nil {
				return nil, fmt.Errorf("stdin: %w", err)
			}
			for _, r := range res {
				out = append(out, input{source: "stdin", res: r})
			}
			continue
		}
		paths, err := expandPath(f)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			res, err := decodeFile(p, opts)
			if err != nil {
				return nil, err
			}
			for _, r := range res {
				out = append(out, input{source: p, res: r})
			}
		}
	}
	return out, nil
}

// expandPath returns a file, or a directory's *.yaml, *.yml and *.json
// files sorted by name (not recursive).
func expandPath(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
			if !e.IsDir() {
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no *.yaml, *.yml or *.json files", p)
	}
	return out, nil
}

func decodeFile(p string, opts resource.DecodeOptions) ([]*resource.Resource, error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	res, err := opts.UnmarshalAll(io.Reader(fh))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return res, nil
}

// validateInputs checks every resource locally and prints every problem;
// it reports whether all are valid.
func (a *App) validateInputs(inputs []input) bool {
	ok := true
	seen := map[string]string{}
	for _, in := range inputs {
		r := in.res
		t := r.Type()
		id := fmt.Sprintf("%s %s", r.Meta.GetType(), displayName(r.Meta.GetMesh(), r.Meta.GetName()))
		if t != nil && t.System {
			ok = false
			fmt.Fprintf(a.Stderr, "Error: %s (%s): %s is written by the control plane and cannot be applied\n", id, in.source, t.Name)
			continue
		}
		if err := resource.Validate(r); err != nil {
			ok = false
			var ve *resource.ValidationError
			if errors.As(err, &ve) {
				fmt.Fprintf(a.Stderr, "Error: %s (%s) is not valid\n", id, in.source)
				for _, c := range ve.Causes {
					if c.Field != "" {
						fmt.Fprintf(a.Stderr, "  * %s: %s\n", c.Field, c.Message)
					} else {
						fmt.Fprintf(a.Stderr, "  * %s\n", c.Message)
					}
				}
			} else {
				fmt.Fprintf(a.Stderr, "Error: %s (%s): %v\n", id, in.source, err)
			}
			continue
		}
		if prev, dup := seen[r.Key()]; dup {
			ok = false
			fmt.Fprintf(a.Stderr, "Error: %s appears twice (%s and %s)\n", id, prev, in.source)
			continue
		}
		seen[r.Key()] = in.source
	}
	if !ok {
		fmt.Fprintln(a.Stderr, "Nothing was applied.")
	}
	return ok
}
