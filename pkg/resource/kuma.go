package resource

import meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"

const (
	kumaTagPrefix = "kuma.io/"
	weftTagPrefix = "weft.io/"
)

func normaliseKuma(t *Type, meta *meshv1.Meta, spec *node, v *Validator) *Type { return t }
