package cmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/weftctl/internal/client"
)

func generateCommand() *Command {
	return &Command{Name: "generate", Summary: "Generate tokens and certificates", Subcommands: []*Command{
		{Name: "dataplane-token", Summary: "Token a dataplane presents to the xds-server", Run: runDataplaneToken},
		{Name: "zone-token", Summary: "Token a zone control plane presents to global", Run: runZoneToken},
		{Name: "ingress-token", Summary: "Token a zone ingress presents to its zone's xds-server", Run: runIngressToken},
		{Name: "user-token", Summary: "Token for the API and weftctl", Run: runUserToken},
		{Name: "tls-certificate", Summary: "Self-signed TLS certificate for control-plane endpoints", Run: runTLSCertificate},
	}}
}

func revokeCommand() *Command {
	return &Command{Name: "revoke", Summary: "Revoke tokens", Subcommands: []*Command{
		{Name: "token", Summary: "Deny-list one token by id", Run: runRevokeToken},
		{Name: "signing-key", Summary: "Rotate the token signing key: every token issued so far stops working", Run: runRevokeSigningKey},
	}}
}

const revokeTokenUsage = `Usage:
  weftctl revoke token --id ID
  weftctl revoke token --token-file FILE

Deny-lists a token until it expires: by its id (the "id" of the
POST /tokens/* response, the token's jti claim) or by the token in FILE. Every verifier of this
control plane (api-server, xds-server, ca-service, zone-sync) refuses it within
seconds, and xds-server closes its streams. Needs an admin token.

Example:
  weftctl revoke token --token-file web-1.token`

const revokeSigningKeyUsage = `Usage:
  weftctl revoke signing-key --yes

Rotates the token signing key to a new generation: every token signed by an
older one stops verifying within seconds, on every verifier: all dataplane,
zone, user and service tokens, including the admin token used here. Issue new
ones with a token the new key signed (weftctl up writes a fresh admin token on
its next start). Needs an admin token.`

func runRevokeToken(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("revoke token")
	id := fs.String("id", "", "token id (jti)")
	file := fs.String("token-file", "", "file holding the token to revoke")
	pos, err := a.Parse(fs, revokeTokenUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("revoke token takes no arguments (got %q)", pos[0])
	}
	if (*id == "") == (*file == "") {
		return usageErrorf("give exactly one of --id and --token-file")
	}
	req := client.RevokeTokenRequest{ID: *id}
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		req.Token = strings.TrimSpace(string(b))
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	out, err := c.RevokeToken(ctx, req)
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	_, err = fmt.Fprintf(a.Stdout, "revoked token %s (deny-listed until %s)\n", out.ID, out.Until)
	return err
}

func runRevokeSigningKey(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("revoke signing-key")
	yes := fs.Bool("yes", false, "confirm: every token issued so far stops working")
	pos, err := a.Parse(fs, revokeSigningKeyUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("revoke signing-key takes no arguments (got %q)", pos[0])
	}
	if !*yes {
		return usageErrorf("rotating the signing key invalidates every token, this one included: pass --yes")
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	gen, kid, err := c.RotateSigningKey(ctx)
	if err != nil {
		return fmt.Errorf("rotate signing key: %w", err)
	}
	_, err = fmt.Fprintf(a.Stdout, "token signing key rotated to generation %d (key id %s): every token issued before is now invalid\n", gen, kid)
	return err
}

const dataplaneTokenUsage = `Usage:
  weftctl generate dataplane-token --name NAME [--mesh MESH] [--service S ...] [--unbound]
                                   [--tag k=v ...] [--valid-for 1y]

Prints a token for dataplane MESH/NAME, valid for 1 year unless --valid-for
says otherwise. Needs an admin token.

The token is bound to services: its dataplane may register (inbounds,
gateway) and be certified only as those weft.io/service values. Without
--service, the services of the registered Dataplane MESH/NAME are used (so
register it first, or name them). --unbound issues a token that may claim
any service: only for trusted automation.

Example:
  weftctl apply -f web-1.yaml
  weftctl generate dataplane-token --mesh default --name web-1 --valid-for 30d > /etc/weft/token
  weftctl generate dataplane-token --mesh default --name web-2 --service web > web-2.token`

const zoneTokenUsage = `Usage:
  weftctl generate zone-token --zone ZONE [--valid-for 1y]

Prints a token a zone control plane uses to connect to global, valid for 1
year unless --valid-for says otherwise. Needs an admin token.

Example:
  weftctl generate zone-token --zone east --valid-for 1y`

const ingressTokenUsage = `Usage:
  weftctl generate ingress-token --zone ZONE [--name NAME] [--valid-for 1y]

Prints the token a zone ingress (ingress-manager --token-file, or weft-dp
running an Envoy ingress) presents to its zone's xds-server: bound to zone
ZONE and the ZoneIngress NAME (ingress-manager --name, default "ingress"),
valid for 1 year unless --valid-for says otherwise. It fetches that
ingress's configuration and nothing else (no dataplane's, no certificate).
Ask the zone's own control plane (global refuses). Needs an admin token.

Example:
  weftctl generate ingress-token --zone east --name ingress > ingress.token`

const userTokenUsage = `Usage:
  weftctl generate user-token --name NAME [--group G ...] [--valid-for 24h]

Prints an API token for user NAME in the given groups, valid for 24 hours
unless --valid-for says otherwise. Needs an admin token.

Example:
  weftctl generate user-token --name alice --group mesh-admins --valid-for 7d`

const tlsCertificateUsage = `Usage:
  weftctl generate tls-certificate --type server|client [--hostname H ...]
                                   [--cert-file cert.pem] [--key-file key.pem]
                                   [--valid-for 1y] [--key-type ecdsa-p256|rsa] [--overwrite]

Writes a self-signed certificate and key for control-plane endpoints (for
operators who bring their own TLS). Server certificates need a --hostname.

Example:
  weftctl generate tls-certificate --type server --hostname cp.example.com --hostname 10.0.0.5`

// tagsFlag is a repeatable k=v flag.
type tagsFlag map[string]string

func (t tagsFlag) String() string { return formatTags(t) }
func (t tagsFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not k=v", v)
	}
	t[k] = val
	return nil
}

func validForFlag(fs *flag.FlagSet) *string {
	return fs.String("valid-for", "", "how long the token is valid, e.g. 24h, 30d, 1y (default: the server's: 1y for dataplane and zone tokens, 24h for user tokens)")
}

func checkValidFor(s string) error {
	if s == "" {
		return nil
	}
	d, err := resource.ParseDuration(s)
	if err != nil {
		return usageErrorf("--valid-for: %v", err)
	}
	if d <= 0 {
		return usageErrorf("--valid-for must be positive")
	}
	return nil
}

func checkIdentifier(flagName, value string, label bool) error {
	v := resource.NewValidator()
	if label {
		resource.CheckLabel(v, value)
	} else {
		resource.CheckName(v, value)
	}
	var ve *resource.ValidationError
	if err := v.Err(); errors.As(err, &ve) && len(ve.Causes) > 0 {
		return usageErrorf("--%s: %s", flagName, ve.Causes[0].Message)
	}
	return nil
}

func (a *App) printToken(tok *client.Token) error {
	_, err := fmt.Fprintln(a.Stdout, tok.Token)
	return err
}

func runDataplaneToken(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("generate dataplane-token")
	mesh := fs.String("mesh", DefaultMesh, "mesh of the dataplane")
	name := fs.String("name", "", "name of the dataplane (required)")
	tags := tagsFlag{}
	fs.Var(tags, "tag", "tag `k=v` the dataplane must carry; repeatable")
	var services stringsFlag
	fs.Var(&services, "service", "weft.io/service `value` the token is bound to; repeatable (default: the registered Dataplane's)")
	unbound := fs.Bool("unbound", false, "issue a token bound to no service (its dataplane may claim any)")
	validFor := validForFlag(fs)
	pos, err := a.Parse(fs, dataplaneTokenUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("generate dataplane-token takes no arguments (got %q)", pos[0])
	}
	if *name == "" {
		return usageErrorf("--name is required")
	}
	for _, e := range []error{checkIdentifier("mesh", *mesh, true), checkIdentifier("name", *name, false), checkValidFor(*validFor)} {
		if e != nil {
			return e
		}
	}
	for _, s := range services {
		if err := checkIdentifier("service", s, true); err != nil {
			return err
		}
	}
	if *unbound && len(services) > 0 {
		return usageErrorf("--unbound and --service exclude each other")
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	req := client.DataplaneTokenRequest{Mesh: *mesh, Name: *name, ValidFor: *validFor, Services: services, Unbound: *unbound}
	if len(tags) > 0 {
		req.Tags = tags
	}
	tok, err := c.GenerateDataplaneToken(ctx, req)
	if err != nil {
		return fmt.Errorf("generate dataplane token: %w", err)
	}
	return a.printToken(tok)
}

func runZoneToken(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("generate zone-token")
	zone := fs.String("zone", "", "zone name (required)")
	validFor := validForFlag(fs)
	pos, err := a.Parse(fs, zoneTokenUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("generate zone-token takes no arguments (got %q)", pos[0])
	}
	if *zone == "" {
		return usageErrorf("--zone is required")
	}
	for _, e := range []error{checkIdentifier("zone", *zone, true), checkValidFor(*validFor)} {
		if e != nil {
			return e
		}
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	tok, err := c.GenerateZoneToken(ctx, client.ZoneTokenRequest{Zone: *zone, ValidFor: *validFor})
	if err != nil {
		return fmt.Errorf("generate zone token: %w", err)
	}
	return a.printToken(tok)
}

func runIngressToken(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("generate ingress-token")
	zone := fs.String("zone", "", "zone of the ingress (required)")
	name := fs.String("name", "ingress", "ZoneIngress name (ingress-manager --name)")
	validFor := validForFlag(fs)
	pos, err := a.Parse(fs, ingressTokenUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("generate ingress-token takes no arguments (got %q)", pos[0])
	}
	if *zone == "" {
		return usageErrorf("--zone is required")
	}
	for _, e := range []error{checkIdentifier("zone", *zone, true), checkIdentifier("name", *name, false), checkValidFor(*validFor)} {
		if e != nil {
			return e
		}
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	tok, err := c.GenerateIngressToken(ctx, client.IngressTokenRequest{Zone: *zone, Name: *name, ValidFor: *validFor})
	if err != nil {
		return fmt.Errorf("generate ingress token: %w", err)
	}
	return a.printToken(tok)
}

func runUserToken(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("generate user-token")
	name := fs.String("name", "", "user name (required)")
	var groups stringsFlag
	fs.Var(&groups, "group", "`group` the user belongs to; repeatable")
	validFor := validForFlag(fs)
	pos, err := a.Parse(fs, userTokenUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("generate user-token takes no arguments (got %q)", pos[0])
	}
	if *name == "" {
		return usageErrorf("--name is required")
	}
	if err := checkValidFor(*validFor); err != nil {
		return err
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	tok, err := c.GenerateUserToken(ctx, client.UserTokenRequest{Name: *name, Groups: groups, ValidFor: *validFor})
	if err != nil {
		return fmt.Errorf("generate user token: %w", err)
	}
	return a.printToken(tok)
}

// TLSRequest is what `generate tls-certificate` asks the generator for.
type TLSRequest struct {
	Type      string // "server" or "client"
	Hostnames []string
	Validity  time.Duration
	KeyType   string // "ecdsa-p256" or "rsa"
}

// TLSGenerator returns a PEM certificate and PEM key.
type TLSGenerator func(TLSRequest) (certPEM, keyPEM []byte, err error)

// errTLSNotAvailable is returned by builds without a generator (App.GenerateTLS nil).
var errTLSNotAvailable = errors.New("generate tls-certificate is not available in this build")

func runTLSCertificate(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("generate tls-certificate")
	typ := fs.String("type", "", "certificate type: server or client (required)")
	var hosts stringsFlag
	fs.Var(&hosts, "hostname", "DNS name or IP (`host`) the certificate is for; repeatable (required for server)")
	certFile := fs.String("cert-file", "cert.pem", "where to write the certificate (PEM)")
	keyFile := fs.String("key-file", "key.pem", "where to write the private key (PEM, mode 0600)")
	validFor := fs.String("valid-for", "1y", "validity, e.g. 90d, 1y")
	keyType := fs.String("key-type", "ecdsa-p256", "key type: ecdsa-p256 or rsa")
	overwrite := fs.Bool("overwrite", false, "replace existing files")
	pos, err := a.Parse(fs, tlsCertificateUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("generate tls-certificate takes no arguments (got %q)", pos[0])
	}
	if *typ != "server" && *typ != "client" {
		return usageErrorf("--type must be server or client")
	}
	if *typ == "server" && len(hosts) == 0 {
		return usageErrorf("--hostname is required for a server certificate")
	}
	if *keyType != "ecdsa-p256" && *keyType != "rsa" {
		return usageErrorf("--key-type must be ecdsa-p256 or rsa")
	}
	validity, err := resource.ParseDuration(*validFor)
	if err != nil || validity <= 0 {
		return usageErrorf("--valid-for: must be a positive duration like 90d or 1y")
	}
	if *certFile == "" || *keyFile == "" || *certFile == *keyFile {
		return usageErrorf("--cert-file and --key-file must be two different, non-empty paths")
	}
	if a.GenerateTLS == nil {
		return errTLSNotAvailable
	}
	if !*overwrite {
		for _, p := range []string{*certFile, *keyFile} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists: pass --overwrite to replace it", p)
			}
		}
	}
	cert, key, err := a.GenerateTLS(TLSRequest{Type: *typ, Hostnames: hosts, Validity: validity, KeyType: *keyType})
	if err != nil {
		return fmt.Errorf("generate tls-certificate: %w", err)
	}
	// The key first, private from the start: a half-done run leaves no
	// certificate without its key.
	if err := writeFileAtomic(*keyFile, key, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(*certFile, cert, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "wrote %s and %s (key mode 0600)\n", *certFile, *keyFile)
	return nil
}

// writeFileAtomic writes data to path through a temporary file created with
// mode perm, then renames it into place.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".weftctl-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
