package cmd

import (
	"context"
	"fmt"

	"github.com/weftmesh/weft/pkg/resource"
)

const deleteUsage = `Usage:
  weftctl delete TYPE NAME [-m MESH] [--force]

Deletes one resource (in mesh "default" unless -m is given). Deleting a mesh
deletes every resource in it; while dataplanes in it are online the control
plane refuses (409) unless --force is given.

Examples:
  weftctl delete dataplane web-1 -m demo
  weftctl delete traffic-permission allow-all
  weftctl delete mesh demo
  weftctl delete mesh demo --force`

func deleteCommand() *Command {
	return &Command{Name: "delete", Summary: "Delete a resource", Run: runDelete}
}

func runDelete(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("delete")
	mesh := meshFlagUsage(fs, "mesh of the resource (default \"default\")")
	force := fs.Bool("force", false, "delete a mesh even while dataplanes in it are online")
	pos, err := a.Parse(fs, deleteUsage, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErrorf("delete needs TYPE and NAME, e.g. 'weftctl delete dataplane web-1' (see 'weftctl delete --help')")
	}
	t, err := lookupType(pos[0])
	if err != nil {
		return err
	}
	m := *mesh
	if !t.MeshScoped() && m != "" {
		return usageErrorf("%s is not mesh-scoped: -m/--mesh does not apply", t.Name)
	}
	if t.MeshScoped() && m == "" {
		m = DefaultMesh
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	if *force && t != resource.MeshType {
		return usageErrorf("--force applies to meshes only")
	}
	if err := c.DeleteForce(ctx, t, m, pos[1], *force); err != nil {
		return fmt.Errorf("delete %s: %w", t.Name+" "+displayName(m, pos[1]), err)
	}
	fmt.Fprintf(a.Stdout, "deleted %s %s\n", t.Name, displayName(m, pos[1]))
	return nil
}

// displayName is "mesh/name" for mesh-scoped resources, "name" otherwise.
func displayName(mesh, name string) string {
	if mesh == "" {
		return name
	}
	return mesh + "/" + name
}
