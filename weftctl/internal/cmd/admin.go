package cmd

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/store"
)

func adminCommand() *Command {
	return &Command{Name: "admin", Summary: "Maintenance on a control plane's etcd (sealing keys, unreadable values)", Subcommands: []*Command{
		{Name: "reseal", Summary: "Re-seal every sealed value with the first (active) encryption key", Run: runReseal},
		{Name: "repair", Summary: "List (and with --delete remove) stored values that cannot be decoded", Run: runRepair},
	}}
}

const resealUsage = `Usage:
  weftctl admin reseal --etcd-endpoints HOST:PORT[,...] --encryption-key-file FILE
                       [--etcd-ca-file F --etcd-cert-file F --etcd-key-file F]

Re-seals every sealed value in one control plane's etcd (Secrets,
GlobalSecrets including the control plane's own cp-* secrets, builtin CA
roots) with the first key of the key file, so older keys can then be
dropped. Each value is rewritten only if it did not change since it was read
(concurrent writes are never lost), keeps its metadata, and values already
sealed with the first key are left alone: run it again at any time. It talks
to etcd directly, with the same key file as the services (the keys come from
$WEFT_ENCRYPTION_KEYS when --encryption-key-file is not given).

Rotation: put the new key first in every service's key file, restart them,
run reseal, then remove the old key and restart again (docs/deploy.md).`

const repairUsage = `Usage:
  weftctl admin repair --etcd-endpoints HOST:PORT[,...] --encryption-key-file FILE [--delete]
                       [--etcd-ca-file F --etcd-cert-file F --etcd-key-file F]

Lists the stored values of one control plane's etcd that cannot be decoded
(sealed with a key that is not in FILE, tampered with, or corrupt) with the
reason. Lists and watches skip such values; with --delete they are removed
(only that key: an unreadable Mesh's resources stay). Restore the missing
key instead when you can. A synced value (on a zone) comes back from global
at the next sync.`

func adminFlags(a *App, name string) (*flag.FlagSet, *config.Etcd, *config.Encryption) {
	fs := a.FlagSet(name)
	etcd := &config.Etcd{}
	enc := &config.Encryption{}
	etcd.RegisterFlags(fs)
	enc.RegisterFlags(fs)
	return fs, etcd, enc
}

func adminStore(ctx context.Context, a *App, etcd *config.Etcd, enc *config.Encryption) (*store.Store, func(), error) {
	if err := etcd.Validate(); err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	keys, err := enc.Load()
	if err != nil {
		return nil, nil, err
	}
	cli, _, err := etcd.Connect()
	if err != nil {
		return nil, nil, err
	}
	st := store.New(cli, store.WithKeyring(keys), store.WithTimeout(10*time.Second))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := st.Revision(pctx); err != nil {
		cli.Close()
		return nil, nil, fmt.Errorf("etcd %v: %w", etcd.Endpoints, err)
	}
	return st, func() { cli.Close() }, nil
}

func runReseal(ctx context.Context, a *App, args []string) error {
	fs, etcd, enc := adminFlags(a, "admin reseal")
	pos, err := a.Parse(fs, resealUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("admin reseal takes no arguments (got %q)", pos[0])
	}
	st, done, err := adminStore(ctx, a, etcd, enc)
	if err != nil {
		return err
	}
	defer done()
	res, err := st.Reseal(ctx)
	fmt.Fprintf(a.Stdout, "resealed %d, already current %d, unreadable %d\n", res.Resealed, res.Current, len(res.Failed))
	for _, k := range res.Failed {
		fmt.Fprintf(a.Stdout, "unreadable: %s (see weftctl admin repair)\n", k)
	}
	if err != nil {
		return err
	}
	if len(res.Failed) > 0 {
		return fmt.Errorf("%d values could not be opened with the configured keys: do not drop any key until they are repaired", len(res.Failed))
	}
	return nil
}

func runRepair(ctx context.Context, a *App, args []string) error {
	fs, etcd, enc := adminFlags(a, "admin repair")
	del := fs.Bool("delete", false, "remove the values that cannot be decoded")
	pos, err := a.Parse(fs, repairUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("admin repair takes no arguments (got %q)", pos[0])
	}
	st, done, err := adminStore(ctx, a, etcd, enc)
	if err != nil {
		return err
	}
	defer done()
	bad, err := st.Undecodable(ctx)
	if err != nil {
		return err
	}
	if len(bad) == 0 {
		fmt.Fprintln(a.Stdout, "every stored value decodes")
		return nil
	}
	for _, b := range bad {
		action := "unreadable"
		if *del {
			action = "deleted"
			if err := st.DeleteUndecodable(ctx, b.Type, b.Mesh, b.Name, b.Revision); err != nil {
				action = "not deleted (" + err.Error() + ")"
			}
		}
		fmt.Fprintf(a.Stdout, "%s: %s: %s\n", b.Key(), action, b.Reason)
	}
	if !*del {
		return fmt.Errorf("%d values cannot be decoded: restore the key that sealed them, or run again with --delete", len(bad))
	}
	return nil
}
