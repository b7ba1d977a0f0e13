package cmd

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/weftmesh/weft/pkg/version"
)

// Version is weftctl's version: the Weft version (pkg/version, the one
// the control plane reports), set at build time with
// -ldflags "-X github.com/weftmesh/weft/pkg/version.Version=v1.2.3".
var Version = version.Version

const versionUsage = `Usage:
  weftctl version [--client]

Prints weftctl's version and, unless --client is given and when a control
plane is configured, the control plane's product, version, mode and zone.`

func versionCommand() *Command {
	return &Command{Name: "version", Summary: "Print the client and control plane versions", Run: runVersion}
}

func runVersion(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("version")
	clientOnly := fs.Bool("client", false, "print only the client version")
	pos, err := a.Parse(fs, versionUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("version takes no arguments (got %q)", pos[0])
	}
	fmt.Fprintf(a.Stdout, "Client: weftctl %s (%s, %s/%s%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, vcsRevision())
	if *clientOnly {
		return nil
	}
	c, err := a.Client()
	if errors.Is(err, errNoControlPlane) {
		fmt.Fprintln(a.Stdout, "Control plane: none configured")
		return nil
	}
	if err != nil {
		return err
	}
	idx, err := c.Index(ctx)
	if err != nil {
		return fmt.Errorf("control plane %s: %w", c.BaseURL(), err)
	}
	fmt.Fprintf(a.Stdout, "Control plane: %s %s, mode %s", idx.Product, idx.Version, idx.Mode)
	if idx.Zone != "" {
		fmt.Fprintf(a.Stdout, ", zone %s", idx.Zone)
	}
	if idx.InstanceID != "" {
		fmt.Fprintf(a.Stdout, ", instance %s", idx.InstanceID)
	}
	fmt.Fprintf(a.Stdout, " (%s)\n", c.BaseURL())
	return nil
}

func vcsRevision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return ", " + s.Value[:12]
		}
	}
	return ""
}
