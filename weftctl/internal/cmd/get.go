package cmd

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/weftctl/internal/client"
)

// DefaultMesh is the mesh that commands naming one resource use when -m is
// not given.
const DefaultMesh = "default"

const getUsage = `Usage:
  weftctl get TYPE [NAME] [-m MESH] [-o table|yaml|json]

Lists resources of TYPE (all meshes unless -m is given), or shows one by NAME
(in mesh "default" unless -m is given). Listings page through every result.
YAML output is one document per resource, so it can be fed to 'weftctl apply'.

Examples:
  weftctl get meshes
  weftctl get dataplanes -m default
  weftctl get dp web-1 -o yaml
  weftctl get traffic-permissions -o json`

func getCommand() *Command {
	return &Command{Name: "get", Summary: "Show one resource or list resources", Run: runGet}
}

func runGet(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("get")
	mesh := meshFlag(fs)
	out := outputFlag(fs)
	pageSize := fs.Int("page-size", client.DefaultPageSize, "items per request when listing (1..1000)")
	pos, err := a.Parse(fs, getUsage+"\n\nTypes:\n"+typeList(), args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageErrorf("get needs TYPE and at most one NAME, e.g. 'weftctl get dataplanes' (see 'weftctl get --help')")
	}
	if err := checkFormat(*out); err != nil {
		return err
	}
	if *pageSize < 1 || *pageSize > 1000 {
		return usageErrorf("--page-size must be in 1..1000")
	}
	t, err := lookupType(pos[0])
	if err != nil {
		return err
	}
	if !t.MeshScoped() && *mesh != "" {
		return usageErrorf("%s is not mesh-scoped: -m/--mesh does not apply", t.Name)
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	if len(pos) == 2 {
		m := *mesh
		if t.MeshScoped() && m == "" {
			m = DefaultMesh
		}
		o, err := c.Get(ctx, t, m, pos[1])
		if err != nil {
			return fmt.Errorf("get %s: %w", t.Name+" "+displayName(m, pos[1]), err)
		}
		return a.printObjects(t, *out, []*client.Object{o}, true)
	}
	objs, err := c.ListAll(ctx, t, *mesh, *pageSize)
	if err != nil {
		return fmt.Errorf("list %s: %w", t.Collection, err)
	}
	return a.printObjects(t, *out, objs, false)
}

func (a *App) printObjects(t *resource.Type, format string, objs []*client.Object, single bool) error {
	if format == formatTable {
		return a.printResourceTable(t, objs)
	}
	return writeObjects(a.Stdout, format, objs, single)
}

func meshFlag(fs *flag.FlagSet) *string {
	return meshFlagUsage(fs, "mesh (default: all meshes when listing, \"default\" when naming one resource)")
}

// meshFlagUsage is meshFlag with the command's own description of -m.
func meshFlagUsage(fs *flag.FlagSet, usage string) *string {
	m := new(string)
	fs.StringVar(m, "m", "", usage)
	fs.StringVar(m, "mesh", "", "mesh (same as -m)")
	return m
}

// lookupType resolves a command-line type name ("dp", "dataplanes",
// "Dataplane") or explains which names exist.
func lookupType(s string) (*resource.Type, error) {
	t, ok := resource.Lookup(s)
	if !ok {
		return nil, usageErrorf("unknown resource type %q; known types:\n%s", s, typeList())
	}
	return t, nil
}

// typeList lists the types by collection, with their scope.
func typeList() string {
	var lines []string
	for _, t := range resource.Types() {
		scope := "mesh-scoped"
		if !t.MeshScoped() {
			scope = "global"
		}
		if t.System {
			scope += ", read-only"
		}
		lines = append(lines, fmt.Sprintf("  %-22s %s (%s)", t.Collection, t.Name, scope))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
