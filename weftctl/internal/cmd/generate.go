package cmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/weftctl/internal/client"
)

func generateCommand() *Command {
	return &Command{Name: "generate", Summary: "Generate tokens and certificates", Subcommands: []*Command{
		{Name: "dataplane-token", Summary: "Token a dataplane presents to the xds-server", Run: runDataplaneToken},
		{Name: "zone-token", Summary: "Token a zone control plane presents to global", Run: runZoneToken},
		{Name: "user-token", Summary: "Token for the API and weftctl", Run: runUserToken},
		{Name: "tls-certificate", Summary: "Self-signed TLS certificate for control-plane endpoints", Run: runTLSCertificate},
	}}
}

const dataplaneTokenUsage = `Usage:
  weftctl generate dataplane-token --name NAME [--mesh MESH] [--tag k=v ...] [--valid-for 24h]

Prints a token for dataplane MESH/NAME. Needs an admin token.

Example:
  weftctl generate dataplane-token --mesh default --name web-1 --valid-for 30d > /etc/weft/token`

const zoneTokenUsage = `Usage:
  weftctl generate zone-token --zone ZONE [--valid-for 24h]

Prints a token a zone control plane uses to connect to global. Needs an admin token.

Example:
  weftctl generate zone-token --zone east --valid-for 1y`

const userTokenUsage = `Usage:
  weftctl generate user-token --name NAME [--group G ...] [--valid-for 24h]

Prints an API token for user NAME in the given groups. Needs an admin token.

Example:
  weftctl generate user-token --name alice --group mesh-admins --valid-for 7d`

const tlsCertificateUsage = `Usage:
  weftctl generate tls-certificate --type server|client --hostname H [--hostname ...]
                                   [--cert-file cert.pem] [--key-file key.pem]

Writes a self-signed certificate and key for control-plane endpoints.`

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
	return fs.String("valid-for", "", "how long the token is valid, e.g. 24h, 30d, 1y (default: the server's, 24h)")
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
	fs.Var(tags, "tag", "tag k=v the dataplane must carry; repeatable")
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
	c, err := a.Client()
	if err != nil {
		return err
	}
	req := client.DataplaneTokenRequest{Mesh: *mesh, Name: *name, ValidFor: *validFor}
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

func runUserToken(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("generate user-token")
	name := fs.String("name", "", "user name (required)")
	var groups stringsFlag
	fs.Var(&groups, "group", "group the user belongs to; repeatable")
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

// errTLSNotAvailable: the certificate generator lives in pkg/cptls, which
// the CA work is adding. TODO(lead): once pkg/cptls is in main, call its
// generator here with (typ, hostnames) and write certFile/keyFile (key 0600).
var errTLSNotAvailable = errors.New("generate tls-certificate is not available yet: the certificate generator (pkg/cptls) has not landed in this build")

func runTLSCertificate(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("generate tls-certificate")
	typ := fs.String("type", "", "certificate type: server or client (required)")
	var hosts stringsFlag
	fs.Var(&hosts, "hostname", "DNS name or IP the certificate is for; repeatable (required)")
	certFile := fs.String("cert-file", "cert.pem", "where to write the certificate (PEM)")
	keyFile := fs.String("key-file", "key.pem", "where to write the private key (PEM, mode 0600)")
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
	if len(hosts) == 0 {
		return usageErrorf("--hostname is required")
	}
	if *certFile == "" || *keyFile == "" {
		return usageErrorf("--cert-file and --key-file must not be empty")
	}
	return errTLSNotAvailable
}
