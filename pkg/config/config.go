// Package config binds service settings to flags with WEFT_<SERVICE>_<FLAG>
// environment overrides, and holds the settings every service shares (etcd,
// encryption keys, admin address, logging).
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/pkg/seal"
)

// EnvName is the environment variable that overrides a flag of a service:
// WEFT_<SERVICE>_<FLAG>, upper-cased, '-' and '.' as '_'.
func EnvName(service, flagName string) string {
	r := strings.NewReplacer("-", "_", ".", "_")
	return "WEFT_" + strings.ToUpper(r.Replace(service)) + "_" + strings.ToUpper(r.Replace(flagName))
}

// Parse parses args into fs, then applies environment overrides for every
// flag not given on the command line. Flags win over the environment.
func Parse(fs *flag.FlagSet, service string, args []string, lookup func(string) (string, bool)) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if lookup == nil {
		lookup = os.LookupEnv
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := EnvName(service, f.Name)
		if v, ok := lookup(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}

// StringList is a comma-separated list flag.
type StringList []string

func (l *StringList) String() string { return strings.Join(*l, ",") }

// Set replaces the list (so an environment override replaces a default).
func (l *StringList) Set(v string) error {
	*l = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// Etcd is how a service reaches etcd.
type Etcd struct {
	Endpoints StringList
	CAFile    string
	CertFile  string
	KeyFile   string
	// Client, when set, is used instead of dialling (weftctl up and tests).
	Client *clientv3.Client
}

// RegisterFlags adds --etcd-* flags.
func (e *Etcd) RegisterFlags(fs *flag.FlagSet) {
	if len(e.Endpoints) == 0 {
		e.Endpoints = StringList{"127.0.0.1:2379"}
	}
	fs.Var(&e.Endpoints, "etcd-endpoints", "comma-separated etcd endpoints (host:port)")
	fs.StringVar(&e.CAFile, "etcd-ca-file", e.CAFile, "CA bundle verifying etcd's serving certificate (enables TLS)")
	fs.StringVar(&e.CertFile, "etcd-cert-file", e.CertFile, "client certificate for etcd")
	fs.StringVar(&e.KeyFile, "etcd-key-file", e.KeyFile, "client key for etcd")
}

// Validate checks the etcd settings.
func (e *Etcd) Validate() error {
	if e.Client != nil {
		return nil
	}
	if len(e.Endpoints) == 0 {
		return errors.New("etcd-endpoints: at least one endpoint is required")
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		return errors.New("etcd-cert-file and etcd-key-file go together")
	}
	return nil
}

// Connect returns the configured client, or dials one. The bool reports
// whether the caller owns (and must close) the client.
func (e *Etcd) Connect() (*clientv3.Client, bool, error) {
	if e.Client != nil {
		return e.Client, false, nil
	}
	cfg := clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialKeepAliveTime: 30 * time.Second, DialKeepAliveTimeout: 10 * time.Second}
	if e.CAFile != "" || e.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.CAFile != "" {
			pem, err := os.ReadFile(e.CAFile)
			if err != nil {
				return nil, false, fmt.Errorf("etcd-ca-file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, false, errors.New("etcd-ca-file: no certificates found")
			}
		}
		if e.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
			if err != nil {
				return nil, false, fmt.Errorf("etcd client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, false, fmt.Errorf("etcd: %w", err)
	}
	return cli, true, nil
}

// EncryptionKeysEnv holds keys when no key file is given.
const EncryptionKeysEnv = "WEFT_ENCRYPTION_KEYS"

// Encryption is where the at-rest encryption keys come from.
type Encryption struct {
	KeyFile string
	// Keyring, when set, is used directly (weftctl up and tests).
	Keyring *seal.Keyring
}

// RegisterFlags adds --encryption-key-file.
func (e *Encryption) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&e.KeyFile, "encryption-key-file", e.KeyFile,
		"file of id:base64 AES-256 keys (first seals, others still open; default: $"+EncryptionKeysEnv+")")
}

// Load returns the keyring.
func (e *Encryption) Load() (*seal.Keyring, error) {
	if e.Keyring != nil {
		return e.Keyring, nil
	}
	return seal.Load(e.KeyFile, EncryptionKeysEnv)
}
