package cmd

import (
	"context"
	"fmt"
	"strings"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/weftctl/internal/client"
)

// explainInputs previews every policy among inputs on the control plane
// (nothing is stored) and prints what each would do.
func (a *App) explainInputs(ctx context.Context, inputs []input) error {
	c, err := a.Client()
	if err != nil {
		return err
	}
	failed := 0
	for _, in := range inputs {
		r := in.res
		t := r.Type()
		name := displayName(r.Meta.GetMesh(), r.Meta.GetName())
		if !policy.IsPolicy(t) {
			fmt.Fprintf(a.Stdout, "%s %s: valid (not a policy: no preview)\n", t.Name, name)
			continue
		}
		p, _, err := c.PreviewPolicy(ctx, r)
		if err != nil {
			failed++
			a.PrintError(fmt.Errorf("explain %s %s (%s): %w", t.Name, name, in.source, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		printPreview(a, t.Name, name, p)
	}
	if failed > 0 {
		fmt.Fprintf(a.Stderr, "%d of %d resource(s) failed; nothing applied (dry run)\n", failed, len(inputs))
		return errReported
	}
	fmt.Fprintf(a.Stderr, "%d resource(s) valid; nothing applied (dry run)\n", len(inputs))
	return nil
}

func printPreview(a *App, typ, name string, p *client.Preview) {
	what := "new"
	if p.ReplacesExisting {
		what = "replaces the stored one"
	}
	fmt.Fprintf(a.Stdout, "%s %s (%s): matches %d of %d dataplane(s)\n", typ, name, what, p.MatchedDataplanes, p.TotalDataplanes)
	for _, im := range p.Impacts {
		target := im.Dataplane
		if im.Destination != "" {
			target += " -> " + im.Destination
		}
		switch {
		case !im.Applies:
			fmt.Fprintf(a.Stdout, "  %s: overridden by %s (more specific)\n", target, im.LosesTo)
		case im.Replaces != "" && im.Replaces != p.Name:
			fmt.Fprintf(a.Stdout, "  %s: applies, overriding %s\n", target, im.Replaces)
		default:
			fmt.Fprintf(a.Stdout, "  %s: applies\n", target)
		}
	}
	fmt.Fprintf(a.Stdout, "  generated config changes for %d of %d proxies compared (xds-server %s)\n", p.ChangedProxies, p.ComparedProxies, p.InstanceID)
	for _, d := range p.Diffs {
		if d.Error != "" {
			fmt.Fprintf(a.Stdout, "    %s (%s): would get no new configuration: %s\n", d.Dataplane, d.ProxyKind, d.Error)
			continue
		}
		var parts []string
		for _, td := range d.Types {
			typ := td.TypeURL[strings.LastIndexByte(td.TypeURL, '.')+1:]
			for _, x := range []struct {
				verb  string
				names []string
			}{{"+", td.Added}, {"~", td.Changed}, {"-", td.Removed}} {
				if len(x.names) > 0 {
					parts = append(parts, fmt.Sprintf("%s%d %s (%s)", x.verb, len(x.names), typ, strings.Join(x.names, ", ")))
				}
			}
		}
		fmt.Fprintf(a.Stdout, "    %s (%s): %s\n", d.Dataplane, d.ProxyKind, strings.Join(parts, "; "))
	}
	if len(p.Diffs) < p.ChangedProxies {
		fmt.Fprintf(a.Stdout, "    ... and %d more\n", p.ChangedProxies-len(p.Diffs))
	}
}
