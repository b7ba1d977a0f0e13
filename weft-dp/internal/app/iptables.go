package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/weftmesh/weft/pkg/tproxy"
	"github.com/weftmesh/weft/weft-dp/internal/iptables"
)

// iptablesMain is `weft-dp iptables`: print (--print) and/or apply
// (--apply) the transparent-proxy redirection rules.
func iptablesMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := tproxy.Default()
	fs := flag.NewFlagSet(service+" iptables", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	print := fs.Bool("print", false, "print the rules (iptables-restore format) on stdout")
	apply := fs.Bool("apply", false, "load the rules with iptables-restore --noflush (needs CAP_NET_ADMIN)")
	restore := fs.String("iptables-restore", "iptables-restore", "iptables-restore executable, looked up in PATH")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "weft-dp iptables: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if !*print && !*apply {
		fmt.Fprintln(stderr, "weft-dp iptables: nothing to do: pass --print, --apply or both")
		return 2
	}
	rules, err := iptables.Rules(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "weft-dp iptables:", err)
		return 2
	}
	if *print {
		if _, err := stdout.Write(rules); err != nil {
			return 1
		}
	}
	if *apply {
		if err := iptables.Apply(ctx, *restore, rules); err != nil {
			fmt.Fprintln(stderr, "weft-dp iptables:", err)
			return 1
		}
	}
	return 0
}
