package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/k8s-controller/crd"
	"github.com/weftmesh/weft/k8s-controller/internal/crsync"
	"github.com/weftmesh/weft/k8s-controller/internal/webhook"
)

// buildCRSync is the CR ↔ store sync.
func buildCRSync(_ context.Context, d *Deps) ([]Component, error) {
	c := crsync.New(crsync.Config{Dynamic: d.Dynamic, Store: d.Store, Informers: d.Informers, Mode: d.Config.Mode, Zone: d.Config.Zone,
		Origin: d.Config.Origin(), Resync: d.Config.Resync, Log: d.Log.With("part", "crsync"), Registry: d.Registry})
	d.AddCheck("custom-resources", func(context.Context) error { return c.Ready() })
	return []Component{{Name: "crsync", Run: c.Run}}, nil
}

// buildValidatingWebhook serves the validating webhook and keeps its
// configuration's caBundle (and URL) current.
func buildValidatingWebhook(_ context.Context, d *Deps) ([]Component, error) {
	if d.Webhooks == nil {
		return nil, nil
	}
	v := webhook.NewValidator(d.Config.Mode, d.Config.Zone, d.Config.Origin(), d.Log.With("part", "webhook"), d.Registry)
	d.Webhooks.Handle("POST "+webhook.ValidatePath, v)
	return []Component{{Name: "webhook-config", Run: func(ctx context.Context) error {
		return keepCurrent(ctx, d, "ValidatingWebhookConfiguration "+d.Config.WebhookConfigName, func(ctx context.Context) error {
			return ensureValidatingConfig(ctx, d)
		})
	}}}, nil
}

// keepCurrent runs ensure now and at every resync until ctx ends, retrying
// failures with a backoff; the first failure of a run is logged with what
// to check.
func keepCurrent(ctx context.Context, d *Deps, what string, ensure func(context.Context) error) error {
	backoff := time.Second
	logged := false
	for {
		err := ensure(ctx)
		wait := d.Config.Resync
		switch {
		case err == nil:
			if logged {
				d.Log.Info(what + " is current again")
			}
			logged, backoff = false, time.Second
		case ctx.Err() != nil:
			return nil
		default:
			if !logged {
				d.Log.Warn(what+" not updated; retrying (check the controller's RBAC: get/update on it, create when --webhook-url is set)", "error", err)
				logged = true
			}
			wait, backoff = backoff, min(2*backoff, time.Minute)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// ValidatingWebhook is the controller's webhook entry: every Weft kind
// (resources "*" of the group, not their status), on create and update;
// charts/k8s-controller/templates/webhook.yaml installs the same.
func ValidatingWebhook(cfg *Config, caBundle []byte) admissionregistrationv1.ValidatingWebhook {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	scope := admissionregistrationv1.ClusterScope
	timeout := int32(10)
	wh := admissionregistrationv1.ValidatingWebhook{
		Name:                    "validate.weft.io",
		ClientConfig:            admissionregistrationv1.WebhookClientConfig{CABundle: caBundle},
		FailurePolicy:           &fail,
		SideEffects:             &none,
		TimeoutSeconds:          &timeout,
		AdmissionReviewVersions: []string{"v1"},
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{crd.Group}, APIVersions: []string{crd.Version}, Resources: []string{"*"}, Scope: &scope},
		}},
	}
	if cfg.WebhookURL != "" {
		u := strings.TrimSuffix(cfg.WebhookURL, "/") + webhook.ValidatePath
		wh.ClientConfig.URL = &u
	}
	return wh
}

// ensureValidatingConfig writes the caBundle (and, with --webhook-url, the
// URL) into the ValidatingWebhookConfiguration; with --webhook-url it
// creates the configuration when it is absent.
func ensureValidatingConfig(ctx context.Context, d *Deps) error {
	api := d.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	name := d.Config.WebhookConfigName
	want := ValidatingWebhook(d.Config, d.CABundle)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if d.Config.WebhookURL == "" {
			return fmt.Errorf("ValidatingWebhookConfiguration %s does not exist: install it with the chart, or set --webhook-url for the controller to create it", name)
		}
		_, err = api.Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": ServiceName}},
			Webhooks:   []admissionregistrationv1.ValidatingWebhook{want},
		}, metav1.CreateOptions{FieldManager: ServiceName})
		if err == nil {
			d.Log.Info("created the ValidatingWebhookConfiguration", "name", name, "url", *want.ClientConfig.URL)
		}
		return err
	}
	if err != nil {
		return err
	}
	changed := false
	found := false
	for i := range cur.Webhooks {
		w := &cur.Webhooks[i]
		if w.Name != want.Name {
			continue
		}
		found = true
		if string(w.ClientConfig.CABundle) != string(d.CABundle) {
			w.ClientConfig.CABundle, changed = d.CABundle, true
		}
		if want.ClientConfig.URL != nil && (w.ClientConfig.URL == nil || *w.ClientConfig.URL != *want.ClientConfig.URL) {
			w.ClientConfig.URL, w.ClientConfig.Service, changed = want.ClientConfig.URL, nil, true
		}
	}
	if !found {
		return errors.New("it has no webhook named " + want.Name)
	}
	if !changed {
		return nil
	}
	_, err = api.Update(ctx, cur, metav1.UpdateOptions{FieldManager: ServiceName})
	if err == nil {
		d.Log.Info("updated the ValidatingWebhookConfiguration's caBundle", "name", name)
	}
	return err
}
