package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
}

// ZoneTokenRequest asks for a token a zone control plane presents to global.
type ZoneTokenRequest struct {
	Zone     string `json:"zone"`
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
