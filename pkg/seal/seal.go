// Package seal encrypts secret material at rest with AES-256-GCM. A Keyring
// holds one active key that seals and any number of older keys that still
// open, so keys can be rotated without rewriting every value at once.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	storev1 "github.com/weftmesh/weft/proto/gen/go/weft/store/v1"
)

// KeySize is the AES-256 key length.
const KeySize = 32

// Keyring seals with its active key and opens with any of its keys.
type Keyring struct {
	active string
	aeads  map[string]cipher.AEAD
}

// Key is one named key.
type Key struct {
	ID    string
	Bytes []byte
}

// New builds a keyring; the first key seals.
func New(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: no encryption key configured")
	}
	k := &Keyring{active: keys[0].ID, aeads: map[string]cipher.AEAD{}}
	for _, key := range keys {
		if key.ID == "" || strings.ContainsAny(key.ID, ":, \n") {
			return nil, fmt.Errorf("seal: key id %q must be non-empty without ':', ',' or spaces", key.ID)
		}
		if len(key.Bytes) != KeySize {
			return nil, fmt.Errorf("seal: key %q is %d bytes, want %d", key.ID, len(key.Bytes), KeySize)
		}
		if _, dup := k.aeads[key.ID]; dup {
			return nil, fmt.Errorf("seal: key id %q appears twice", key.ID)
		}
		block, err := aes.NewCipher(key.Bytes)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		k.aeads[key.ID] = aead
	}
	return k, nil
}

// Parse reads keys from text: "id:base64key" entries separated by newlines
// or commas; the first seals. Blank lines and '#' comments are skipped.
func Parse(text string) (*Keyring, error) {
	var keys []Key
	for _, line := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ',' }) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, b64, ok := strings.Cut(line, ":")
		if !ok {
			return nil, errors.New("seal: each key must be written id:base64key")
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil {
			return nil, fmt.Errorf("seal: key %q is not valid base64", id)
		}
		keys = append(keys, Key{ID: strings.TrimSpace(id), Bytes: raw})
	}
	return New(keys...)
}

// Load reads a keyring from a file (when path is set) or from the value of an
// environment variable.
func Load(path, envVar string) (*Keyring, error) {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("seal: read key file: %w", err)
		}
		return Parse(string(data))
	}
	if v := os.Getenv(envVar); v != "" {
		return Parse(v)
	}
	return nil, fmt.Errorf("seal: no encryption key: set a key file or %s", envVar)
}

// GenerateKeyFile writes a new random key to path (mode 0600) unless the
// file exists, and returns the keyring it holds. The file appears complete
// or not at all, and an existing file is never replaced, so callers racing
// on one path all get the same key.
func GenerateKeyFile(path string) (*Keyring, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return Parse(string(data))
	}
	if !errors.Is(err, fs.ErrNotExist) {
		// Never replace a key file that exists but cannot be read: the
		// values sealed with it would be lost.
		return nil, fmt.Errorf("seal: read key file: %w", err)
	}
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	text := "# Weft encryption keys: id:base64. The first seals; add a new key first to rotate.\nk1:" + base64.StdEncoding.EncodeToString(raw) + "\n"
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("seal: write key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("seal: write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("seal: write key file: %w", err)
	}
	// CreateTemp makes the file 0600. Link, unlike rename, fails when path
	// exists: whoever links first wins, the others read its key.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			data, rerr := os.ReadFile(path)
			if rerr != nil {
				return nil, fmt.Errorf("seal: read key file: %w", rerr)
			}
			return Parse(string(data))
		}
		return nil, fmt.Errorf("seal: write key file: %w", err)
	}
	return Parse(text)
}

// ActiveKeyID names the key that seals.
func (k *Keyring) ActiveKeyID() string { return k.active }

// Seal encrypts plaintext; aad binds the ciphertext to its place (the etcd
// key), so a sealed value copied under another key does not open.
func (k *Keyring) Seal(plaintext, aad []byte) (*storev1.Sealed, error) {
	aead := k.aeads[k.active]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return &storev1.Sealed{KeyId: k.active, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plaintext, aad)}, nil
}

// Open decrypts a sealed value with the key that sealed it.
func (k *Keyring) Open(s *storev1.Sealed, aad []byte) ([]byte, error) {
	aead, ok := k.aeads[s.GetKeyId()]
	if !ok {
		return nil, fmt.Errorf("seal: value was sealed with key %q, which is not configured", s.GetKeyId())
	}
	if len(s.GetNonce()) != aead.NonceSize() {
		return nil, errors.New("seal: malformed nonce")
	}
	pt, err := aead.Open(nil, s.GetNonce(), s.GetCiphertext(), aad)
	if err != nil {
		return nil, fmt.Errorf("seal: value does not open with key %q (tampered or wrong key)", s.GetKeyId())
	}
	return pt, nil
}
