// Package openapi embeds the OpenAPI document generated from the API protos.
package openapi

import _ "embed"

// JSON is the generated OpenAPI (v2) document of the REST API.
//
//go:embed weft.swagger.json
var JSON []byte
