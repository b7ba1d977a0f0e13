package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Token is an issued token.
type Token struct {
	Token   string
	Expires time.Time // zero if the server did not say
}

// DataplaneTokenRequest asks for a token a dataplane presents to xds-server.
type DataplaneTokenRequest struct {
	Mesh     string            `json:"mesh"`
	Name     string            `json:"name"`
	Tags     map[string]string `json:"tags,omitempty"`
	ValidFor string            `json:"validFor,omitempty"`
	Services []string          `json:"services,omitempty"`
	Unbound  bool              `json:"unbound,omitempty"`
}

// RevokeTokenRequest names a token to revoke: by id or the token itself.
type RevokeTokenRequest struct {
	ID    string `json:"id,omitempty"`
	Token string `json:"token,omitempty"`
}

// Revoked is a deny-list entry.
type Revoked struct {
	ID    string `json:"id"`
	Until string `json:"until"`
}

// RevokeToken deny-lists a token (POST /tokens/revoke).
func (c *Client) RevokeToken(ctx context.Context, r RevokeTokenRequest) (*Revoked, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	_, data, err := c.do(ctx, http.MethodPost, c.url(nil, "tokens", "revoke"), body)
	if err != nil {
		return nil, err
	}
	var out Revoked
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("revoke response is not the expected JSON: %w", err)
	}
	return &out, nil
}

// RotateSigningKey replaces the token signing key (POST
// /tokens/signing-key/rotate) and returns the new generation and key id.
func (c *Client) RotateSigningKey(ctx context.Context) (uint64, string, error) {
	_, data, err := c.do(ctx, http.MethodPost, c.url(nil, "tokens", "signing-key", "rotate"), []byte("{}"))
	if err != nil {
		return 0, "", err
	}
	var out struct {
		Generation json.Number `json:"generation"`
		KeyID      string      `json:"keyId"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return 0, "", fmt.Errorf("rotate response is not the expected JSON: %w", err)
	}
	gen, _ := strconv.ParseUint(out.Generation.String(), 10, 64)
	return gen, out.KeyID, nil
}

// ZoneTokenRequest asks for a token a zone control plane presents to global.
type ZoneTokenRequest struct {
	Zone     string `json:"zone"`
	ValidFor string `json:"validFor,omitempty"`
}

// IngressTokenRequest asks for the token a zone ingress presents to its
// zone's xds-server.
type IngressTokenRequest struct {
	Zone     string `json:"zone"`
	Name     string `json:"name,omitempty"`
	ValidFor string `json:"validFor,omitempty"`
}

// UserTokenRequest asks for a user (API) token.
type UserTokenRequest struct {
	Name     string   `json:"name"`
	Groups   []string `json:"groups,omitempty"`
	ValidFor string   `json:"validFor,omitempty"`
}

// GenerateDataplaneToken issues a dataplane token (POST /tokens/dataplane).
func (c *Client) GenerateDataplaneToken(ctx context.Context, r DataplaneTokenRequest) (*Token, error) {
	return c.postToken(ctx, "dataplane", r)
}

// GenerateZoneToken issues a zone token (POST /tokens/zone).
func (c *Client) GenerateZoneToken(ctx context.Context, r ZoneTokenRequest) (*Token, error) {
	return c.postToken(ctx, "zone", r)
}

// GenerateIngressToken issues an ingress token (POST /tokens/ingress).
func (c *Client) GenerateIngressToken(ctx context.Context, r IngressTokenRequest) (*Token, error) {
	return c.postToken(ctx, "ingress", r)
}

// GenerateUserToken issues a user token (POST /tokens/user).
func (c *Client) GenerateUserToken(ctx context.Context, r UserTokenRequest) (*Token, error) {
	return c.postToken(ctx, "user", r)
}

func (c *Client) postToken(ctx context.Context, kind string, req any) (*Token, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rawURL := c.url(nil, "tokens", kind)
	_, data, err := c.do(ctx, http.MethodPost, rawURL, body)
	if err != nil {
		return nil, err
	}
	return DecodeToken(data)
}

// DecodeToken decodes a token response: {"token": "...", "expiresTime": "RFC 3339"}.
func DecodeToken(data []byte) (*Token, error) {
	var w struct {
		Token       string `json:"token"`
		ExpiresTime string `json:"expiresTime"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("token response is not the expected JSON: %w", err)
	}
	if w.Token == "" {
		return nil, errors.New("token response has no token")
	}
	t := &Token{Token: w.Token}
	if w.ExpiresTime != "" {
		exp, err := time.Parse(time.RFC3339Nano, w.ExpiresTime)
		if err != nil {
			return nil, fmt.Errorf("token response has a bad expiresTime %q", w.ExpiresTime)
		}
		t.Expires = exp
	}
	return t, nil
}
