package crd

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/weftmesh/weft/pkg/resource"
)

// Labels the controller puts on the store copies of custom resources.
const (
	// ManagedByLabel marks a store resource written from a custom resource:
	// the controller deletes it when the CR goes, and puts it back when it
	// is changed through the REST API (the CR wins).
	ManagedByLabel = "weft.io/managed-by"
	ManagedBy      = "k8s-controller"
)

// MaxObjectSize bounds a custom resource the controller converts (the
// Kubernetes API server's own request limit is 3 MiB; a Weft resource is
// at most resource.MaxDocumentSize).
const MaxObjectSize = resource.MaxDocumentSize

// ToResource converts a custom resource (its unstructured content) of
// kind k into the Weft resource it stands for, with the decoding and the
// validation of the REST API's PUT: errors are a *resource.DecodeError or
// a *resource.ValidationError with the REST API's field paths. origin is
// the writer's origin (see app.Config.Origin).
func ToResource(k Kind, obj map[string]any, origin string) (*resource.Resource, error) {
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	doc := map[string]any{"type": k.Kind, "name": name}
	if k.Type.MeshScoped() {
		mesh, _ := obj["mesh"].(string)
		if mesh == "" {
			mesh = DefaultMesh
		}
		doc["mesh"] = mesh
	}
	switch spec := obj["spec"].(type) {
	case nil:
	case map[string]any:
		for key, v := range spec {
			if resource.IsMetaKey(key) {
				return nil, &resource.DecodeError{Field: "spec." + key, Err: fmt.Errorf("is metadata, not a spec field: set it in the custom resource's metadata or top level")}
			}
			doc[key] = v
		}
	default:
		return nil, &resource.DecodeError{Field: "spec", Err: errors.New("must be an object")}
	}
	labels := map[string]string{}
	if l, ok := meta["labels"].(map[string]any); ok {
		for key, v := range l {
			if s, ok := v.(string); ok {
				labels[key] = s
			}
		}
	}
	labels[ManagedByLabel] = ManagedBy
	doc["labels"] = labels
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, &resource.DecodeError{Err: err}
	}
	if len(js) > MaxObjectSize {
		return nil, &resource.DecodeError{Err: fmt.Errorf("resource is %d bytes, more than the limit of %d", len(js), MaxObjectSize)}
	}
	r, err := resource.Unmarshal(js, k.Type)
	if err != nil {
		return nil, err
	}
	r.Meta.Origin = origin
	if err := resource.ValidateWrite(r); err != nil {
		return nil, err
	}
	return r, nil
}

// Causes lists an error's field-path causes (one cause without a field for
// an error that has none).
func Causes(err error) []resource.Cause {
	var ve *resource.ValidationError
	if errors.As(err, &ve) {
		return ve.Causes
	}
	var de *resource.DecodeError
	if errors.As(err, &de) {
		return de.AllCauses()
	}
	return []resource.Cause{{Message: err.Error()}}
}

// Writable says why kind k cannot be written on a control plane of mode,
// or returns nil: the api-server's ownership rule (resource.OwnedElsewhere).
func Writable(k Kind, mode, zone string) error {
	if why := resource.OwnedElsewhere(k.Type, mode, zone); why != "" {
		return errors.New(why)
	}
	return nil
}
