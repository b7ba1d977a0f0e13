package pods

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
	"github.com/weftmesh/weft/k8s-controller/internal/podtoken"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// DefaultTokenValidity is how long a pod's dataplane token is valid. weft-dp
// reads its token once, at start, so the token must outlive the pod; it is
// revoked when the pod goes away (TokenOptions.Revoke).
const DefaultTokenValidity = 365 * 24 * time.Hour

// TokenOptions configure per-pod dataplane tokens.
type TokenOptions struct {
	// Keys issues (and revokes) the tokens: this control plane's signing
	// key, the one its api-server, xds-server and ca-service verify with.
	Keys *token.Keys
	// Validity of each token (default DefaultTokenValidity).
	Validity time.Duration
	// Revoke revokes a pod's token when the pod goes away or its services
	// change (best effort: a failure is logged and counted).
	Revoke bool
}

// issued is what the controller wrote for one pod.
type issued struct {
	uid      string
	mesh     string
	services string // sorted, comma-joined
	id       string
	exp      time.Time
	secret   string
}

// PodServices is the identity the pods controller derives for pod: its
// mesh and the weft.io/service values of the Dataplane Build makes for it
// (the same rule, so the token's binding and the Dataplane agree), computed
// before the pod runs (its IP is not needed). ok is false for a pod that
// gets no token: not in the mesh, not injected, finished, or with no
// Dataplane possible.
func PodServices(pod *corev1.Pod, ns *corev1.Namespace, services []*corev1.Service, zone string) (mesh string, svcs []string, ok bool) {
	switch {
	case !annotations.InMesh(pod, ns), pod.Annotations[annotations.Injected] == "",
		pod.Status.Phase == corev1.PodSucceeded, pod.Status.Phase == corev1.PodFailed:
		return "", nil, false
	}
	p := pod.DeepCopy()
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = "192.0.2.1" // TEST-NET-1: any valid IP, only the services are kept
	p.DeletionTimestamp = nil
	r, err := Build(p, ns, services, zone)
	if err != nil {
		return "", nil, false
	}
	svcs = resource.DataplaneServices(r.Spec.(*meshv1.Dataplane))
	slices.Sort(svcs)
	return r.Meta.GetMesh(), slices.Compact(svcs), true
}

// syncToken keeps the token Secret of one pod: written (once per pod, and
// again when its mesh or services change) while the pod is injected and
// in the mesh, deleted (and its token revoked) when it is not.
func (c *Controller) syncToken(ctx context.Context, key, ns, name string, pod *corev1.Pod, nsObj *corev1.Namespace, svcs []*corev1.Service) error {
	c.mu.Lock()
	prev, had := c.tokens[key]
	c.mu.Unlock()
	var mesh string
	var services []string
	ok := false
	if pod != nil {
		mesh, services, ok = PodServices(pod, nsObj, svcs, c.o.Zone)
	}
	joined := strings.Join(services, ",")
	if ok && had && prev.uid == string(pod.UID) && prev.mesh == mesh && prev.services == joined {
		return nil
	}
	if !ok {
		if !had {
			return nil
		}
		if err := c.deleteSecret(ctx, ns, prev.secret); err != nil {
			return err
		}
		c.revokeToken(ctx, key, prev, "the pod is gone or out of the mesh")
		c.forgetToken(key)
		return nil
	}
	want := token.Claims{Kind: token.KindDataplane, Mesh: mesh, Services: services}
	want.Subject = Name(ns, name)
	tok, claims, err := c.o.Tokens.Keys.IssueClaims(ctx, want, c.tokenValidity())
	if err != nil {
		return fmt.Errorf("issue the dataplane token of pod %s: %w", key, err)
	}
	no := false
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: podtoken.SecretName(name), Namespace: ns,
			Labels: map[string]string{annotations.ManagedBy: annotations.ManagedByValue, podtoken.Label: "true"},
			Annotations: map[string]string{
				"weft.io/dataplane": mesh + "/" + Name(ns, name),
				"weft.io/services":  joined,
				"weft.io/token-id":  claims.ID,
				"weft.io/expires":   claims.ExpiresAt.UTC().Format(time.RFC3339),
			},
			// Kubernetes' garbage collector deletes the Secret with the pod
			// even when this controller is down.
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: name, UID: pod.UID, BlockOwnerDeletion: &no}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{podtoken.Key: []byte(tok)},
	}
	secrets := c.client.CoreV1().Secrets(ns)
	_, err = secrets.Create(ctx, sec, metav1.CreateOptions{FieldManager: annotations.ManagedByValue})
	if apierrors.IsAlreadyExists(err) {
		// Overwritten whole, unconditionally: the controller may not read
		// Secrets (no get/list RBAC), and this name is the pod's.
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{FieldManager: annotations.ManagedByValue})
	}
	if err != nil {
		return fmt.Errorf("write the token Secret %s/%s: %w", ns, sec.Name, err)
	}
	c.mu.Lock()
	c.tokens[key] = issued{uid: string(pod.UID), mesh: mesh, services: joined, id: claims.ID, exp: claims.ExpiresAt.Time, secret: sec.Name}
	c.mu.Unlock()
	c.tokenWrites.Inc()
	c.log.Info("wrote the pod's dataplane token", "pod", key, "secret", sec.Name, "mesh", mesh, "services", joined, "token-id", claims.ID)
	if had {
		// The old token may claim a service the pod no longer has.
		c.revokeToken(ctx, key, prev, "replaced")
	}
	return nil
}

func (c *Controller) tokenValidity() time.Duration {
	if c.o.Tokens.Validity > 0 {
		return c.o.Tokens.Validity
	}
	return DefaultTokenValidity
}

func (c *Controller) deleteSecret(ctx context.Context, ns, name string) error {
	err := c.client.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the token Secret %s/%s: %w", ns, name, err)
	}
	return nil
}

func (c *Controller) revokeToken(ctx context.Context, key string, t issued, why string) {
	if !c.o.Tokens.Revoke {
		return
	}
	if _, err := c.o.Tokens.Keys.Revoke(ctx, t.id, t.exp); err != nil {
		c.tokenRevokes.WithLabelValues("error").Inc()
		c.log.Warn("could not revoke a pod's dataplane token (it stays valid until it expires)", "pod", key, "token-id", t.id, "expires", t.exp, "why", why, "err", err)
		return
	}
	c.tokenRevokes.WithLabelValues("revoked").Inc()
	c.log.Info("revoked a pod's dataplane token", "pod", key, "token-id", t.id, "why", why)
}

func (c *Controller) forgetToken(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tokens, key)
}
