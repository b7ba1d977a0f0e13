// Package podtoken names the per-pod dataplane token Secret: the injection
// webhook mounts it into the pod it injects, the pods controller writes it
// (a dataplane token for the pod's Dataplane, bound to the services derived
// for the pod) and deletes it with the pod. One definition for both sides.
package podtoken

import (
	"crypto/sha256"
	"encoding/hex"
)

// Prefix starts every per-pod token Secret's name.
const Prefix = "weft-dp-token-"

// Key is the Secret's data key holding the token.
const Key = "token"

// Label marks (with the value "true") the Secrets the pods controller
// writes.
const Label = "k8s.weft.io/pod-token"

// maxName is a Secret name's limit (a DNS subdomain).
const maxName = 253

// SecretName is the token Secret of pod: Prefix + the pod's name, or, for
// a name too long for that, its first characters and a hash of the whole
// (distinct pods keep distinct Secrets).
func SecretName(pod string) string {
	if len(Prefix)+len(pod) <= maxName {
		return Prefix + pod
	}
	sum := sha256.Sum256([]byte(pod))
	h := hex.EncodeToString(sum[:8])
	keep := pod[:maxName-len(Prefix)-1-len(h)]
	for len(keep) > 0 && (keep[len(keep)-1] == '-' || keep[len(keep)-1] == '.') {
		keep = keep[:len(keep)-1]
	}
	return Prefix + keep + "-" + h
}
