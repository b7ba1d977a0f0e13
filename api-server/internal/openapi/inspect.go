package openapi

import "github.com/weftmesh/weft/pkg/policy"

// inspectPaths describes the config dump (GET …/dataplanes/{name}/xds) and
// the dry-run policy preview (PUT/POST …?dryRun=explain), answered by an
// xds-server through the api-server (weft.inspect.v1.InspectService).
func inspectPaths(b *builder, paths obj) {
	str, strs := obj{"type": "string"}, obj{"type": "array", "items": obj{"type": "string"}}
	count := obj{"type": "integer", "minimum": 0}
	b.schemas["ConfigDump"] = obj{"type": "object", "required": []string{"mesh", "name", "source", "instanceId"}, "properties": obj{
		"mesh": str, "name": str,
		"source":             obj{"enum": []string{"stream", "computed"}, "description": "stream: what this xds-server replica last sent the proxy; computed: generated now (the stream is on another replica or closed; no secrets)"},
		"instanceId":         str,
		"connectedInstances": strs,
		"proxyKind":          obj{"enum": []string{"envoy", "grpc", "ingress"}},
		"truncated":          obj{"type": "boolean", "description": "resources were left out to bound the answer (4 MiB of JSON)"},
		"error":              str,
		"types": obj{"type": "array", "items": obj{"type": "object", "required": []string{"typeUrl"}, "properties": obj{
			"typeUrl": str, "version": str,
			"state":        obj{"enum": []string{"ACK", "NACK", "PENDING"}},
			"ackedVersion": str, "lastError": str,
			"acks": count, "nacks": count,
			"total":     count,
			"resources": obj{"type": "array", "items": obj{"type": "object", "required": []string{"@type"}, "description": "protojson of the Envoy resource; private keys read \"[redacted]\""}},
		}}},
	}}
	paths["/meshes/{mesh}/dataplanes/{name}/xds"] = obj{"get": withParams(op("The xDS configuration the xds-server serves a dataplane (config dump)", ref("ConfigDump")),
		[]any{param("mesh"), param("name")})}

	names := obj{"type": "array", "items": str}
	b.schemas["PolicyPreview"] = obj{"type": "object", "required": []string{"mesh", "type", "name", "impacts", "diffs"}, "properties": obj{
		"mesh": str, "type": str, "name": str, "replacesExisting": obj{"type": "boolean"}, "instanceId": str,
		"matchedDataplanes": count, "changedProxies": count, "comparedProxies": count, "totalDataplanes": count,
		"impacts": obj{"type": "array", "items": obj{"type": "object", "required": []string{"dataplane"}, "properties": obj{
			"dataplane": str, "destination": str, "applies": obj{"type": "boolean"}, "losesTo": str, "replaces": str,
		}}},
		"diffs": obj{"type": "array", "items": obj{"type": "object", "required": []string{"dataplane"}, "properties": obj{
			"dataplane": str, "proxyKind": str, "error": str,
			"types": obj{"type": "array", "items": obj{"type": "object", "required": []string{"typeUrl"}, "properties": obj{
				"typeUrl": str, "added": names, "changed": names, "removed": names,
			}}},
		}}},
	}}
	dryRun := obj{"name": "dryRun", "in": "query", "schema": obj{"enum": []string{"explain"}},
		"description": "explain: validate as a write, store nothing, answer the policy's impact (PolicyPreview)"}
	maxProxies := obj{"name": "maxProxies", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": 100},
		"description": "with dryRun: proxies whose config diff is listed, at most (default 100)"}
	for _, t := range policy.Types {
		item := paths["/meshes/{mesh}/"+t.Collection+"/{name}"].(obj)
		if put, ok := item["put"].(obj); ok {
			put["parameters"] = append(put["parameters"].([]any), dryRun, maxProxies)
			r := put["responses"].(obj)
			r["200"] = obj{"description": "OK (with dryRun: the preview)", "content": obj{"application/json": obj{"schema": obj{"anyOf": []any{ref(t.Name), ref("PolicyPreview")}}}}}
		}
		post := withParams(op("Preview a "+t.Name+" (dryRun=explain only; the name is the body's)", ref("PolicyPreview")),
			[]any{param("mesh"), obj{"name": "dryRun", "in": "query", "required": true, "schema": obj{"enum": []string{"explain"}}}, maxProxies})
		post["requestBody"] = obj{"required": true, "content": obj{"application/json": obj{"schema": ref(t.Name)}}}
		paths["/meshes/{mesh}/"+t.Collection].(obj)["post"] = post
	}
}
