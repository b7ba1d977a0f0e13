// Package config owns weftctl's configuration file: the control planes the
// user talks to, their tokens, and which one is current. The file holds
// admin tokens, so it is always written with mode 0600 through an atomic
// rename.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/pkg/resource"
)

// EnvPath names the environment variable that overrides the file's location.
const EnvPath = "WEFTCTL_CONFIG"

// MaxFileSize bounds the configuration file; anything larger is refused.
const MaxFileSize = 1 << 20

// ControlPlane is one control plane the user can talk to.
type ControlPlane struct {
	Name string `json:"name"`
	// Address is the api-server's HTTP base URL, e.g. http://127.0.0.1:5681.
	Address string `json:"address"`
	// Token is sent as "Authorization: Bearer <token>". Empty means none.
	Token string `json:"token,omitempty"`
	// CACertFile holds PEM CA certificates that verify an https address
	// (instead of the system roots).
	CACertFile string `json:"caCertFile,omitempty"`
}

// File is the configuration file's content.
type File struct {
	// Current names the control plane commands use by default.
	Current       string          `json:"currentControlPlane,omitempty"`
	ControlPlanes []*ControlPlane `json:"controlPlanes,omitempty"`
}

// DefaultPath returns $WEFTCTL_CONFIG, or ~/.weft/weftctl.yaml. getenv may be
// nil (os.Getenv).
func DefaultPath(getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if p := getenv(EnvPath); p != "" {
		return p, nil
	}
	home := getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cannot find the weftctl config file: set %s or HOME: %w", EnvPath, err)
		}
		home = h
	}
	return filepath.Join(home, ".weft", "weftctl.yaml"), nil
}

// Parse reads a configuration file's content and checks it.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config file is %d bytes, more than the limit of %d", len(data), MaxFileSize)
	}
	f := &File{}
	if len(bytes.TrimSpace(data)) == 0 {
		return f, nil
	}
	if err := yaml.UnmarshalStrict(data, f); err != nil {
		return nil, fmt.Errorf("config file is not valid: %w", err)
	}
	seen := map[string]bool{}
	for i, cp := range f.ControlPlanes {
		if cp == nil {
			return nil, fmt.Errorf("config file is not valid: controlPlanes[%d] is empty", i)
		}
		if err := ValidateName(cp.Name); err != nil {
			return nil, fmt.Errorf("config file is not valid: controlPlanes[%d].name: %w", i, err)
		}
		if seen[cp.Name] {
			return nil, fmt.Errorf("config file is not valid: control plane %q is listed twice", cp.Name)
		}
		seen[cp.Name] = true
		if err := ValidateAddress(cp.Address); err != nil {
			return nil, fmt.Errorf("config file is not valid: controlPlanes[%d].address: %w", i, err)
		}
	}
	if f.Current != "" && !seen[f.Current] {
		return nil, fmt.Errorf("config file is not valid: currentControlPlane %q is not in controlPlanes", f.Current)
	}
	return f, nil
}

// Load reads the file at path. A missing file is an empty configuration.
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Save writes the file to path with mode 0600, creating its directory with
// mode 0700. The write is atomic: readers see the old or the new file.
func (f *File) Save(path string) error {
	data, err := yaml.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".weftctl-*.yaml")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	// CreateTemp already uses 0600; Chmod guards against an odd umask-less
	// platform so a token never lands in a readable file.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// Find returns the named control plane, or nil.
func (f *File) Find(name string) *ControlPlane {
	for _, cp := range f.ControlPlanes {
		if cp.Name == name {
			return cp
		}
	}
	return nil
}

// CurrentControlPlane returns the current control plane, or nil if none is set.
func (f *File) CurrentControlPlane() *ControlPlane {
	if f.Current == "" {
		return nil
	}
	return f.Find(f.Current)
}

// FindByAddress returns the first control plane with the given address
// (compared without a trailing slash), or nil.
func (f *File) FindByAddress(addr string) *ControlPlane {
	want := strings.TrimRight(addr, "/")
	for _, cp := range f.ControlPlanes {
		if strings.TrimRight(cp.Address, "/") == want {
			return cp
		}
	}
	return nil
}

// Put adds the control plane, replacing one of the same name, and makes it
// current if use is true or if it is the only one. Entries of other names
// with the same address are removed (their names are returned): two
// entries for one address would send one control plane's token to
// another's successor (a stale local-standalone next to local-global on
// the same URL answers 401). If the current one is among them, this one
// becomes current.
func (f *File) Put(cp ControlPlane, use bool) (replaced []string, err error) {
	if err := ValidateName(cp.Name); err != nil {
		return nil, fmt.Errorf("control plane name: %w", err)
	}
	if err := ValidateAddress(cp.Address); err != nil {
		return nil, fmt.Errorf("control plane address: %w", err)
	}
	want := strings.TrimRight(cp.Address, "/")
	kept := f.ControlPlanes[:0]
	for _, o := range f.ControlPlanes {
		if o.Name != cp.Name && strings.TrimRight(o.Address, "/") == want {
			replaced = append(replaced, o.Name)
			if f.Current == o.Name {
				f.Current, use = "", true
			}
			continue
		}
		kept = append(kept, o)
	}
	f.ControlPlanes = kept
	if old := f.Find(cp.Name); old != nil {
		*old = cp
	} else {
		f.ControlPlanes = append(f.ControlPlanes, &cp)
	}
	if use || f.Current == "" {
		f.Current = cp.Name
	}
	return replaced, nil
}

// Use makes the named control plane current.
func (f *File) Use(name string) error {
	if f.Find(name) == nil {
		return fmt.Errorf("there is no control plane named %q (see 'weftctl config control-planes list')", name)
	}
	f.Current = name
	return nil
}

// Remove deletes the named control plane. Removing the current one leaves
// no current control plane.
func (f *File) Remove(name string) error {
	for i, cp := range f.ControlPlanes {
		if cp.Name == name {
			f.ControlPlanes = append(f.ControlPlanes[:i], f.ControlPlanes[i+1:]...)
			if f.Current == name {
				f.Current = ""
			}
			return nil
		}
	}
	return fmt.Errorf("there is no control plane named %q (see 'weftctl config control-planes list')", name)
}

// ValidateName checks a control plane name: a DNS-compatible name, so it is
// easy to type and safe in file names.
func ValidateName(name string) error {
	v := resource.NewValidator()
	resource.CheckName(v, name)
	if err := v.Err(); err != nil {
		var ve *resource.ValidationError
		if errors.As(err, &ve) && len(ve.Causes) > 0 {
			return errors.New(ve.Causes[0].Message)
		}
		return err
	}
	return nil
}

// ValidateAddress checks an api-server base URL.
func ValidateAddress(addr string) error {
	if addr == "" {
		return errors.New("must be set, e.g. http://127.0.0.1:5681")
	}
	u, err := url.Parse(addr)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must start with http:// or https://, e.g. http://127.0.0.1:5681", addr)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host, e.g. http://127.0.0.1:5681", addr)
	}
	if u.User != nil {
		return fmt.Errorf("%q must not carry credentials: use a token", addr)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must not have a query or fragment", addr)
	}
	return nil
}

// AddControlPlaneAt adds (or replaces) a control plane in the file at path
// and makes it current if use is true or it is the only one; entries of
// other names with the same address are removed (see Put).
func AddControlPlaneAt(path, name, address, token string, use bool) error {
	f, err := Load(path)
	if err != nil {
		return err
	}
	if _, err := f.Put(ControlPlane{Name: name, Address: address, Token: token}, use); err != nil {
		return err
	}
	return f.Save(path)
}
