package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/k8s-controller/internal/inject"
	"github.com/weftmesh/weft/k8s-controller/internal/pods"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/token"
)

// PodsConfig configures pods → Dataplanes and the injection webhook.
type PodsConfig struct {
	// Dataplanes turns the pods of the mesh into Dataplanes (standalone and
	// zone mode; a global control plane has no workloads).
	Dataplanes bool
	// Inject serves the injection webhook (needs the webhook listener).
	Inject bool
	// InjectConfigName is the MutatingWebhookConfiguration the controller
	// keeps current.
	InjectConfigName string
	// What injected pods get (inject.Config).
	Image         string
	CP            string
	CPCAConfigMap string
	TokenSecret   string
	DNSServer     string
	// PodTokens gives each injected pod its own dataplane token (a Secret
	// per pod, written by the pods controller, bound to the pod's derived
	// services) instead of the shared TokenSecret.
	PodTokens        bool
	PodTokenValidity time.Duration
	PodTokenRevoke   bool
}

// DefaultPods returns the defaults.
func DefaultPods() PodsConfig {
	return PodsConfig{Dataplanes: true, Inject: true, InjectConfigName: "weft-k8s-controller-inject",
		Image: "ghcr.io/weftmesh/weft-dp:latest", CP: "weft-xds-server.weft-system.svc:5678", TokenSecret: inject.DefaultSecret,
		PodTokens: true, PodTokenValidity: pods.DefaultTokenValidity, PodTokenRevoke: true}
}

// RegisterFlags binds the flags.
func (c *PodsConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Dataplanes, "pod-dataplanes", c.Dataplanes, "turn the pods of the mesh into Dataplanes of this zone (ignored in global mode)")
	fs.BoolVar(&c.Inject, "inject", c.Inject, "serve the sidecar injection webhook (needs --webhook-address; ignored in global mode)")
	fs.StringVar(&c.InjectConfigName, "inject-config-name", c.InjectConfigName, "name of the MutatingWebhookConfiguration whose caBundle (and URL) the controller keeps current")
	fs.StringVar(&c.Image, "inject-image", c.Image, "weft-dp image of the injected sidecar and init container")
	fs.StringVar(&c.CP, "inject-cp", c.CP, "xds-server address injected sidecars dial (weft-dp --cp)")
	fs.StringVar(&c.CPCAConfigMap, "inject-cp-ca-configmap", c.CPCAConfigMap, "ConfigMap (key ca.pem, in the pod's namespace) verifying the xds-server; empty: plaintext (xds-server --insecure-dev only)")
	fs.StringVar(&c.TokenSecret, "inject-token-secret", c.TokenSecret, "Secret (key token, in the pod's namespace) holding the dataplane token")
	fs.BoolVar(&c.PodTokens, "pod-tokens", c.PodTokens, "give each injected pod its own dataplane token, bound to its services, in the Secret weft-dp-token-<pod> (false: every pod mounts --inject-token-secret)")
	fs.DurationVar(&c.PodTokenValidity, "pod-token-validity", c.PodTokenValidity, "validity of a pod's dataplane token (weft-dp reads it once: it must outlive the pod)")
	fs.BoolVar(&c.PodTokenRevoke, "pod-token-revoke", c.PodTokenRevoke, "revoke a pod's dataplane token when the pod goes away or its services change")
	fs.StringVar(&c.DNSServer, "inject-dns-server", c.DNSServer, "IPv4 ip:port of the dns-server injected pods' DNS is redirected to; empty: DNS is not redirected")
}

// Validate checks the flags.
func (c *PodsConfig) Validate() error {
	var errs []error
	if c.DNSServer != "" {
		if ap, err := netip.ParseAddrPort(c.DNSServer); err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
			errs = append(errs, fmt.Errorf("--inject-dns-server: %q must be an IPv4 ip:port", c.DNSServer))
		}
	}
	if c.PodTokens && (c.PodTokenValidity < time.Minute || c.PodTokenValidity > token.MaxValidity) {
		errs = append(errs, fmt.Errorf("--pod-token-validity: %s must be between 1m and %s", c.PodTokenValidity, token.MaxValidity))
	}
	if c.Inject && (c.Image == "" || c.CP == "") {
		errs = append(errs, errors.New("--inject-image and --inject-cp: required with --inject"))
	}
	return errors.Join(errs...)
}

func (c *PodsConfig) injectConfig() inject.Config {
	dns, _ := netip.ParseAddrPort(c.DNSServer)
	return inject.Config{Image: c.Image, CP: c.CP, CPCAConfigMap: c.CPCAConfigMap, TokenSecret: c.TokenSecret, DNSServer: dns, PodTokens: c.PodTokens && c.Dataplanes}
}

// buildPods is pods → Dataplanes.
func buildPods(_ context.Context, d *Deps) ([]Component, error) {
	if !d.Config.Pods.Dataplanes || d.Config.Mode == ModeGlobal {
		return nil, nil
	}
	o := pods.Options{Zone: d.Config.Origin(), Resync: d.Config.Resync, Log: d.Log.With("part", "pods"),
		Metrics: d.Registry, Meshes: d.Informers.For(resource.MeshType)}
	if d.Config.Pods.PodTokens {
		o.Tokens = &pods.TokenOptions{Keys: token.New(d.Store), Validity: d.Config.Pods.PodTokenValidity, Revoke: d.Config.Pods.PodTokenRevoke}
	}
	c := pods.New(d.Kube, d.Store, o)
	d.AddCheck("pods", func(context.Context) error {
		select {
		case <-c.Synced():
			return nil
		default:
			return errors.New("pods not synced yet")
		}
	})
	return []Component{{Name: "pods", Run: c.Run}}, nil
}

// buildInjector serves the injection webhook and keeps its configuration
// current.
func buildInjector(_ context.Context, d *Deps) ([]Component, error) {
	if d.Webhooks == nil || !d.Config.Pods.Inject || d.Config.Mode == ModeGlobal {
		return nil, nil
	}
	nss := d.Kube.CoreV1().Namespaces()
	inj := inject.NewInjector(d.Config.Pods.injectConfig(), func(ctx context.Context, name string) (*corev1.Namespace, error) {
		ns, err := nss.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return ns, err
	}, d.Log.With("part", "inject"), d.Registry)
	d.Webhooks.Handle("POST "+inject.Path, inj)
	return []Component{{Name: "inject-config", Run: func(ctx context.Context) error {
		return keepCurrent(ctx, d, "MutatingWebhookConfiguration "+d.Config.Pods.InjectConfigName, func(ctx context.Context) error {
			return ensureMutatingConfig(ctx, d)
		})
	}}}, nil
}

// MutatingWebhook is the injection webhook entry: pod creations outside
// kube-system, failing open (a controller that is down must not stop every
// pod of the cluster; such pods run without the mesh until recreated).
func MutatingWebhook(cfg *Config, caBundle []byte) admissionregistrationv1.MutatingWebhook {
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	scope := admissionregistrationv1.NamespacedScope
	timeout := int32(10)
	wh := admissionregistrationv1.MutatingWebhook{
		Name:                    "inject.weft.io",
		ClientConfig:            admissionregistrationv1.WebhookClientConfig{CABundle: caBundle},
		FailurePolicy:           &ignore,
		SideEffects:             &none,
		TimeoutSeconds:          &timeout,
		ReinvocationPolicy:      &never,
		AdmissionReviewVersions: []string{"v1"},
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}}}},
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope},
		}},
	}
	if cfg.WebhookURL != "" {
		u := strings.TrimSuffix(cfg.WebhookURL, "/") + inject.Path
		wh.ClientConfig.URL = &u
	}
	return wh
}

// ensureMutatingConfig writes the caBundle (and, with --webhook-url, the
// URL) into the MutatingWebhookConfiguration; with --webhook-url it
// creates the configuration when it is absent.
func ensureMutatingConfig(ctx context.Context, d *Deps) error {
	api := d.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	name := d.Config.Pods.InjectConfigName
	want := MutatingWebhook(d.Config, d.CABundle)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if d.Config.WebhookURL == "" {
			return fmt.Errorf("MutatingWebhookConfiguration %s does not exist: install it with the chart, or set --webhook-url for the controller to create it", name)
		}
		_, err = api.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": ServiceName}},
			Webhooks:   []admissionregistrationv1.MutatingWebhook{want},
		}, metav1.CreateOptions{FieldManager: ServiceName})
		if err == nil {
			d.Log.Info("created the MutatingWebhookConfiguration", "name", name, "url", *want.ClientConfig.URL)
		}
		return err
	}
	if err != nil {
		return err
	}
	i := -1
	for j := range cur.Webhooks {
		if cur.Webhooks[j].Name == want.Name {
			i = j
		}
	}
	if i < 0 {
		return errors.New("it has no webhook named " + want.Name)
	}
	w := &cur.Webhooks[i]
	cc, changed := updateClientConfig(w.ClientConfig, want.ClientConfig)
	if !changed {
		return nil
	}
	w.ClientConfig = cc
	_, err = api.Update(ctx, cur, metav1.UpdateOptions{FieldManager: ServiceName})
	if err == nil {
		d.Log.Info("updated the MutatingWebhookConfiguration's caBundle", "name", name)
	}
	return err
}

// updateClientConfig returns cur with want's caBundle and (when set) URL.
func updateClientConfig(cur, want admissionregistrationv1.WebhookClientConfig) (admissionregistrationv1.WebhookClientConfig, bool) {
	changed := false
	if string(cur.CABundle) != string(want.CABundle) {
		cur.CABundle, changed = want.CABundle, true
	}
	if want.URL != nil && (cur.URL == nil || *cur.URL != *want.URL) {
		cur.URL, cur.Service, changed = want.URL, nil, true
	}
	return cur, changed
}
