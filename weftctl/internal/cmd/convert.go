package cmd

import (
	"context"

	"github.com/weftmesh/weft/pkg/resource"
)

const convertUsage = `Usage:
  weftctl convert [--from-kuma] FILE|DIR|- [...]
  weftctl convert [--from-kuma] -f FILE|DIR|- [-f ...]

Prints the resources of the files in Weft's canonical form (YAML, "---"
separated), as 'weftctl apply' would send them and 'weftctl get -o yaml'
prints them, so a Kuma user can diff before applying. Kuma's universal YAML
shapes are normalised (docs/kuma-compatibility.md); --from-kuma also rewrites
Kuma's tag keys (kuma.io/service, ...) to Weft's (weft.io/service, ...).
Every document is decoded and validated; on any problem nothing is printed
and every problem is reported with its field path and line. Contacts no
control plane.

Examples:
  weftctl convert --from-kuma kuma/mesh.yaml > mesh.yaml
  weftctl convert --from-kuma kuma/ | diff - current.yaml`

func convertCommand() *Command {
	return &Command{Name: "convert", Summary: "Print resources (Kuma's too) in Weft's canonical YAML", Run: runConvert}
}

func runConvert(_ context.Context, a *App, args []string) error {
	fs := a.FlagSet("convert")
	var files stringsFlag
	fs.Var(&files, "f", "`FILE`, directory (its *.yaml, *.yml, *.json) or - for stdin; repeatable")
	fromKuma := fs.Bool("from-kuma", false, "rewrite Kuma's kuma.io/ tag keys to weft.io/")
	pos, err := a.Parse(fs, convertUsage, args)
	if err != nil {
		return err
	}
	files = append(files, pos...)
	if len(files) == 0 {
		return usageErrorf("convert needs a FILE (or - for stdin)")
	}
	inputs, err := a.readValidInputs(files, resource.DecodeOptions{FromKuma: *fromKuma})
	if err != nil {
		return err
	}
	return a.printInputs(inputs)
}
