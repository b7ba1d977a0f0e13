package cmd

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/weftmesh/weft/weftctl/internal/config"
)

func configCommand() *Command {
	return &Command{Name: "config", Summary: "Manage weftctl's configuration file", Subcommands: []*Command{
		{Name: "control-planes", Aliases: []string{"control-plane", "cp"}, Summary: "Control planes weftctl talks to", Subcommands: []*Command{
			{Name: "add", Summary: "Add (or with --overwrite, replace) a control plane", Run: runCPAdd},
			{Name: "use", Summary: "Make a control plane current", Run: runCPUse},
			{Name: "list", Summary: "List control planes", Run: runCPList},
			{Name: "remove", Summary: "Remove a control plane", Run: runCPRemove},
		}},
	}}
}

const cpAddUsage = `Usage:
  weftctl config control-planes add --name NAME --address URL [--token TOKEN] [--ca-cert-file FILE]
                                  [--use] [--overwrite] [--no-verify]

Records a control plane in the config file (mode 0600: it holds tokens), with
the CA certificates that verify an https address if --ca-cert-file is given
(stored as an absolute path). The
first control plane added becomes current; --use makes this one current.
Unless --no-verify is given, weftctl first checks that a Weft api-server
answers at URL with the token.

Example:
  weftctl config control-planes add --name prod --address https://weft.example.com:5681 --token "$TOKEN" --use`

func runCPAdd(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("config control-planes add")
	name := fs.String("name", "", "name of the control plane (required)")
	address := fs.String("address", "", "api-server HTTP address, e.g. http://127.0.0.1:5681 (required)")
	// --token and --ca-cert-file are global flags: here they name this
	// control plane's token and CA certificates.
	use := fs.Bool("use", false, "make it the current control plane")
	overwrite := fs.Bool("overwrite", false, "replace a control plane of the same name")
	noVerify := fs.Bool("no-verify", false, "do not check that the address answers")
	pos, err := a.Parse(fs, cpAddUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("config control-planes add takes no arguments (got %q)", pos[0])
	}
	if *name == "" || *address == "" {
		return usageErrorf("--name and --address are required")
	}
	if err := config.ValidateName(*name); err != nil {
		return usageErrorf("--name: %v", err)
	}
	if err := config.ValidateAddress(*address); err != nil {
		return usageErrorf("--address: %v", err)
	}
	f, path, err := a.LoadConfig()
	if err != nil {
		return err
	}
	if f.Find(*name) != nil && !*overwrite {
		return fmt.Errorf("control plane %q already exists in %s: pass --overwrite to replace it", *name, path)
	}
	caFile := a.CACertFile
	if caFile != "" {
		if caFile, err = filepath.Abs(caFile); err != nil {
			return err
		}
		if _, err := loadCAs(caFile); err != nil {
			return err
		}
	}
	if !*noVerify {
		c, err := a.newClient(Target{Address: *address, Token: a.Token, CACertFile: caFile})
		if err != nil {
			return err
		}
		vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		idx, err := c.Index(vctx)
		cancel()
		if err != nil {
			return fmt.Errorf("verify control plane %s (pass --no-verify to skip): %w", *address, err)
		}
		if idx.Product != "Weft" {
			return fmt.Errorf("verify control plane %s: it answers as %q, not Weft (pass --no-verify to skip)", *address, idx.Product)
		}
	}
	replaced, err := f.Put(config.ControlPlane{Name: *name, Address: *address, Token: a.Token, CACertFile: caFile}, *use)
	if err != nil {
		return err
	}
	if err := f.Save(path); err != nil {
		return err
	}
	for _, r := range replaced {
		fmt.Fprintf(a.Stdout, "removed control plane %q: it had the same address\n", r)
	}
	fmt.Fprintf(a.Stdout, "added control plane %q (%s)", *name, *address)
	if f.Current == *name {
		fmt.Fprint(a.Stdout, "; it is now current")
	}
	fmt.Fprintln(a.Stdout)
	return nil
}

func runCPUse(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("config control-planes use")
	pos, err := a.Parse(fs, "Usage:\n  weftctl config control-planes use NAME", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("config control-planes use needs one NAME")
	}
	f, path, err := a.LoadConfig()
	if err != nil {
		return err
	}
	if err := f.Use(pos[0]); err != nil {
		return err
	}
	if err := f.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "switched to control plane %q\n", pos[0])
	return nil
}

func runCPRemove(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("config control-planes remove")
	pos, err := a.Parse(fs, "Usage:\n  weftctl config control-planes remove NAME", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("config control-planes remove needs one NAME")
	}
	f, path, err := a.LoadConfig()
	if err != nil {
		return err
	}
	if err := f.Remove(pos[0]); err != nil {
		return err
	}
	if err := f.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "removed control plane %q\n", pos[0])
	return nil
}

func runCPList(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("config control-planes list")
	pos, err := a.Parse(fs, "Usage:\n  weftctl config control-planes list", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("config control-planes list takes no arguments (got %q)", pos[0])
	}
	f, _, err := a.LoadConfig()
	if err != nil {
		return err
	}
	tb := newTable(a.Stdout, "ACTIVE", "NAME", "ADDRESS", "TOKEN")
	for _, cp := range f.ControlPlanes {
		active, tok := "", "none"
		if cp.Name == f.Current {
			active = "*"
		}
		if cp.Token != "" {
			tok = "set" // never print it
		}
		tb.row(active, cp.Name, cp.Address, tok)
	}
	return tb.flush()
}
