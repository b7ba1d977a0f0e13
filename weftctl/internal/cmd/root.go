// Package cmd is weftctl's command tree. Each top-level command lives in its
// own file and is listed once in builtins; App.Register adds more (the
// `up` command is one more file and one more line there).
package cmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"github.com/weftmesh/weft/pkg/cptls"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/weftctl/internal/client"
	"github.com/weftmesh/weft/weftctl/internal/config"
)

// Environment variables that override the config file.
const (
	EnvControlPlane = "WEFT_CP"
	EnvToken        = "WEFT_TOKEN"
	EnvCACertFile   = "WEFT_CA_CERT_FILE"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// RunFunc runs a command with the arguments after its name.
type RunFunc func(ctx context.Context, a *App, args []string) error

// Command is one node of the command tree: a runnable command, or a group
// of subcommands.
type Command struct {
	Name    string
	Summary string
	// Run runs the command. Groups leave it nil and set Subcommands.
	Run         RunFunc
	Subcommands []*Command
	// Aliases are other names of the command (singular forms, short
	// names): `inspect dataplane` is `inspect dataplanes`.
	Aliases []string
}

// named reports whether name is the command's name or one of its aliases.
func (c *Command) named(name string) bool {
	return c.Name == name || slices.Contains(c.Aliases, name)
}

// builtins lists the top-level commands; App.Register adds more.
func builtins() []*Command {
	return []*Command{
		applyCommand(),
		convertCommand(),
		getCommand(),
		deleteCommand(),
		inspectCommand(),
		generateCommand(),
		revokeCommand(),
		configCommand(),
		versionCommand(),
		upCommand(),
		adminCommand(),
		completionCommand(),
	}
}

// App holds one invocation's streams, environment and global flags.
type App struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment (os.Getenv by default; tests replace it).
	Getenv func(string) string
	// HTTPClient is used for every API call.
	HTTPClient *http.Client
	// Now is the clock for ages and expiries.
	Now func() time.Time
	// GenerateTLS makes self-signed certificates for `generate
	// tls-certificate`; nil means not available in this build.
	GenerateTLS TLSGenerator

	// Global flags, set by any command's flag set.
	CP         string
	Token      string
	CACertFile string
	ConfigFile string

	commands []*Command
}

// New returns an App on the given streams with the built-in commands.
func New(stdin io.Reader, stdout, stderr io.Writer) *App {
	return &App{
		Stdin:      stdin,
		Stdout:     stdout,
		Stderr:     stderr,
		Getenv:     os.Getenv,
		HTTPClient: &http.Client{Timeout: 60 * time.Second},
		Now:        time.Now,
		commands:   builtins(),
		GenerateTLS: func(r TLSRequest) ([]byte, []byte, error) {
			return cptls.GenerateSelfSigned(cptls.GenerateOptions{Type: r.Type, Hostnames: r.Hostnames, Validity: r.Validity, KeyType: r.KeyType})
		},
	}
}

// Register adds a top-level command, replacing one of the same name.
func (a *App) Register(name, summary string, run RunFunc) {
	a.RegisterCommand(&Command{Name: name, Summary: summary, Run: run})
}

// RegisterCommand adds a top-level command (possibly a group), replacing
// one of the same name.
func (a *App) RegisterCommand(c *Command) {
	for i, old := range a.commands {
		if old.Name == c.Name {
			a.commands[i] = c
			return
		}
	}
	a.commands = append(a.commands, c)
}

// Main runs weftctl with args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return New(stdin, stdout, stderr).Run(ctx, args)
}

// Run runs one invocation and returns its exit code. Errors are printed to
// Stderr.
func (a *App) Run(ctx context.Context, args []string) int {
	root := &Command{Name: "weftctl", Summary: "Weft control plane CLI", Subcommands: a.commands}
	// Global flags may come before the command name.
	fs := a.FlagSet("weftctl")
	fs.Usage = func() { a.groupUsage(fs, []string{"weftctl"}, root) }
	if err := fs.Parse(args); err != nil {
		return a.exitCode(err)
	}
	return a.exitCode(a.dispatch(ctx, []string{"weftctl"}, root, fs.Args()))
}

func (a *App) dispatch(ctx context.Context, path []string, c *Command, args []string) error {
	if c.Run != nil {
		return c.Run(ctx, a, args)
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 && args[0] == "help" {
			// "weftctl help get" is "weftctl get --help".
			return a.dispatch(ctx, path, c, append(args[1:], "--help"))
		}
		a.groupUsage(nil, path, c)
		if len(args) == 0 {
			return usageErrorf("%s needs a command", strings.Join(path, " "))
		}
		return flag.ErrHelp
	}
	for _, sub := range c.Subcommands {
		if sub.named(args[0]) {
			return a.dispatch(ctx, append(path, sub.Name), sub, args[1:])
		}
	}
	if strings.HasPrefix(args[0], "-") {
		return usageErrorf("flag %s must come after a command (see '%s help')", args[0], strings.Join(path, " "))
	}
	return usageErrorf("unknown command %q for %q (see '%s help')", args[0], strings.Join(path, " "), strings.Join(path, " "))
}

func (a *App) groupUsage(fs *flag.FlagSet, path []string, c *Command) {
	w := a.Stderr
	fmt.Fprintf(w, "%s\n\nUsage:\n  %s <command> [flags]\n\nCommands:\n", c.Summary, strings.Join(path, " "))
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	subs := append([]*Command(nil), c.Subcommands...)
	sort.SliceStable(subs, func(i, j int) bool { return subs[i].Name < subs[j].Name })
	for _, s := range subs {
		name := s.Name
		if len(s.Aliases) > 0 {
			name += " (" + strings.Join(s.Aliases, ", ") + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, s.Summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nGlobal flags (accepted by every command):\n")
	if fs == nil {
		fs = a.FlagSet("")
	}
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", strings.Join(path, " "))
}

// FlagSet returns a flag set that reports errors instead of exiting and
// carries the global flags (--cp, --token, --config).
func (a *App) FlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	fs.Var(globalString{&a.CP}, "cp", "control plane API `URL`, e.g. http://127.0.0.1:5681 (env "+EnvControlPlane+")")
	fs.Var(globalString{&a.Token}, "token", "API `TOKEN` (env "+EnvToken+")")
	fs.Var(globalString{&a.CACertFile}, "ca-cert-file", "`FILE` of PEM CA certificates that verify an https control plane (env "+EnvCACertFile+")")
	fs.Var(globalString{&a.ConfigFile}, "config", "config `FILE` (env "+config.EnvPath+", default ~/.weft/weftctl.yaml)")
	return fs
}

// globalString is a global flag shared by every flag set of one run. Its
// String is empty so --help never echoes a value given earlier (a token).
type globalString struct{ p *string }

func (g globalString) String() string     { return "" }
func (g globalString) Set(v string) error { *g.p = v; return nil }

// Parse parses a command's flags, allowing flags after positional arguments
// ("get dp web -m demo"), and returns the positional arguments. A "--" ends
// flag parsing. usage, if not empty, is printed above the flags on --help.
func (a *App) Parse(fs *flag.FlagSet, usage string, args []string) ([]string, error) {
	fs.Usage = func() {
		if usage != "" {
			fmt.Fprintf(a.Stderr, "%s\n\n", strings.TrimSpace(usage))
		}
		fmt.Fprintf(a.Stderr, "Flags:\n")
		fs.PrintDefaults()
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{msg: err.Error(), printed: true}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageError is bad command-line input: exit code 2.
type usageError struct {
	msg     string
	printed bool // the flag package already printed it with the usage
}

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCode prints err (if any) and maps it to an exit code.
func (a *App) exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if !ue.printed {
			fmt.Fprintf(a.Stderr, "Error: %s\n", ue.msg)
		}
		return ExitUsage
	}
	if !errors.Is(err, errReported) {
		a.PrintError(err)
	}
	return ExitError
}

// errReported means the command already printed its errors.
var errReported = errors.New("errors reported")

// PrintError prints an error to Stderr. API errors show their title,
// details and every cause with its field path.
func (a *App) PrintError(err error) {
	fmt.Fprint(a.Stderr, FormatError(err))
}

// FormatError renders an error for people, one "Error:" line and then the
// causes of an API error, one per line.
func FormatError(err error) string {
	var b strings.Builder
	var ae *client.APIError
	if errors.As(err, &ae) {
		// Keep the context the command wrapped around the API error
		// ("get Dataplane/default/web: ...").
		prefix := ""
		if s, inner := err.Error(), ae.Error(); strings.HasSuffix(s, inner) {
			prefix = strings.TrimSuffix(s, inner)
		}
		fmt.Fprintf(&b, "Error: %s%s", prefix, ae.Title)
		if ae.Details != "" && ae.Details != ae.Title {
			fmt.Fprintf(&b, ": %s", ae.Details)
		}
		fmt.Fprintf(&b, " (HTTP %d)\n", ae.StatusCode)
		for _, c := range ae.Causes {
			fmt.Fprintf(&b, "  * %s\n", resource.Cause{Field: c.Field, Message: c.Message, Line: c.Line})
		}
		switch ae.StatusCode {
		case http.StatusUnauthorized:
			fmt.Fprintf(&b, "Hint: pass a token with --token or %s, or add one with 'weftctl config control-planes add --token'.\n", EnvToken)
		case http.StatusForbidden:
			b.WriteString("Hint: the token is valid but not allowed to do this; admin tokens can.\n")
		case http.StatusConflict:
			if strings.Contains(ae.Details, "is used by mesh") {
				b.WriteString("Hint: the mesh's enabled CA reads it; switch the mesh to another backend or secret first.\n")
				break
			}
			if strings.Contains(ae.Details, "online dataplane(s)") {
				b.WriteString("Hint: stop those dataplanes first, or pass --force to delete the mesh anyway.\n")
				break
			}
			b.WriteString("Hint: it changed since the version you sent; get it again ('weftctl get TYPE NAME -o yaml') and reapply your change.\n")
		case http.StatusServiceUnavailable:
			b.WriteString("Hint: the control plane's store (etcd) is unavailable for now; retry shortly. If a write 'may have been applied', get the resource before retrying.\n")
		case http.StatusMethodNotAllowed:
			b.WriteString("Hint: it is owned by another control plane (global or a zone); change it there.\n")
		}
		return b.String()
	}
	var de *resource.DecodeError
	if errors.As(err, &de) && len(de.Causes) > 0 {
		// "FILE: document N: " and then every problem on its own line.
		fmt.Fprintf(&b, "Error: %scould not be decoded\n", strings.TrimSuffix(err.Error(), de.Error()))
		for _, c := range de.Causes {
			fmt.Fprintf(&b, "  * %s\n", c)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "Error: %v\n", err)
	var te *client.TransportError
	if errors.As(err, &te) && !errors.Is(err, context.Canceled) {
		b.WriteString("Hint: is the control plane running? Check --cp, " + EnvControlPlane + " or 'weftctl config control-planes list'.\n")
	}
	return b.String()
}

// ConfigPath returns the config file path: --config, $WEFTCTL_CONFIG, or
// ~/.weft/weftctl.yaml.
func (a *App) ConfigPath() (string, error) {
	if a.ConfigFile != "" {
		return a.ConfigFile, nil
	}
	return config.DefaultPath(a.Getenv)
}

// LoadConfig reads the config file (empty if it does not exist).
func (a *App) LoadConfig() (*config.File, string, error) {
	path, err := a.ConfigPath()
	if err != nil {
		return nil, "", err
	}
	f, err := config.Load(path)
	return f, path, err
}

// AddControlPlane records a control plane in this invocation's config file
// (honouring --config); `weftctl up` uses it after starting.
func (a *App) AddControlPlane(name, address, token string, use bool) error {
	path, err := a.ConfigPath()
	if err != nil {
		return err
	}
	return config.AddControlPlaneAt(path, name, address, token, use)
}

var errNoControlPlane = errors.New("no control plane configured: pass --cp URL (or set " + EnvControlPlane +
	"), run 'weftctl config control-planes add --name NAME --address URL --token TOKEN', or start one with 'weftctl up'")

// Target is a resolved control plane.
type Target struct {
	Address string
	Token   string
	// CACertFile, when set, holds the PEM CA certificates that verify an
	// https control plane (instead of the system roots).
	CACertFile string
}

// ResolveTarget resolves the control plane: --cp / --token /
// --ca-cert-file flags, then WEFT_CP / WEFT_TOKEN / WEFT_CA_CERT_FILE, then
// the config file's current control plane. When the address is given but
// the token or CA file is not, they are taken from the config-file entry
// with that address, if any.
func (a *App) ResolveTarget() (Target, error) {
	t := Target{Address: a.CP, Token: a.Token, CACertFile: a.CACertFile}
	if t.Address == "" {
		t.Address = a.Getenv(EnvControlPlane)
	}
	if t.Token == "" {
		t.Token = a.Getenv(EnvToken)
	}
	if t.CACertFile == "" {
		t.CACertFile = a.Getenv(EnvCACertFile)
	}
	if t.Address != "" && t.Token != "" && (t.CACertFile != "" || !strings.HasPrefix(t.Address, "https:")) {
		return t, nil
	}
	f, _, err := a.LoadConfig()
	if err != nil {
		return Target{}, err
	}
	var cp *config.ControlPlane
	if t.Address == "" {
		if cp = f.CurrentControlPlane(); cp == nil {
			return Target{}, errNoControlPlane
		}
		t.Address = cp.Address
	} else {
		cp = f.FindByAddress(t.Address)
	}
	if cp != nil {
		if t.Token == "" {
			t.Token = cp.Token
		}
		if t.CACertFile == "" {
			t.CACertFile = cp.CACertFile
		}
	}
	return t, nil
}

// Client returns an API client for the resolved control plane.
func (a *App) Client() (*client.Client, error) {
	t, err := a.ResolveTarget()
	if err != nil {
		return nil, err
	}
	return a.newClient(t)
}

// newClient builds a client for t, trusting t.CACertFile if set.
func (a *App) newClient(t Target) (*client.Client, error) {
	hc := a.HTTPClient
	if t.CACertFile != "" {
		pool, err := loadCAs(t.CACertFile)
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		c := *a.HTTPClient
		c.Transport = tr
		hc = &c
	}
	return client.New(t.Address, t.Token, client.WithHTTPClient(hc), client.WithUserAgent("weftctl/"+Version),
		client.WithWarnings(func(w string) { fmt.Fprintf(a.Stderr, "Warning: %s\n", w) }))
}

// loadCAs reads PEM CA certificates (at most 1 MiB).
func loadCAs(path string) (*x509.CertPool, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("CA certificates %s: %w", path, err)
	}
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("CA certificates %s: larger than 1 MiB", path)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA certificates %s: no PEM certificate found", path)
	}
	return pool, nil
}
