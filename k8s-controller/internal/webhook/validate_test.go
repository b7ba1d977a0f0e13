package webhook_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/weftmesh/weft/k8s-controller/internal/webhook"
)

func review(kind string, obj string) []byte {
	b, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u-1", Kind: metav1.GroupVersionKind{Group: "weft.io", Version: "v1alpha1", Kind: kind},
			Operation: admissionv1.Create, Name: "p", Object: runtime.RawExtension{Raw: []byte(obj)}},
	})
	return b
}

func post(t *testing.T, v *webhook.Validator, body []byte) (int, *admissionv1.AdmissionReview) {
	t.Helper()
	rec := httptest.NewRecorder()
	v.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, webhook.ValidatePath, bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		return rec.Code, nil
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return rec.Code, &out
}

const goodTP = `{"apiVersion":"weft.io/v1alpha1","kind":"TrafficPermission","mesh":"m","metadata":{"name":"p"},"spec":{"sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"*"}}]}}`

func TestReviewAllowsAValidResourceAndRefusesAnInvalidOneWithFieldPaths(t *testing.T) {
	reg := prometheus.NewRegistry()
	v := webhook.NewValidator("standalone", "", "", slog.New(slog.DiscardHandler), reg)
	_, out := post(t, v, review("TrafficPermission", goodTP))
	if !out.Response.Allowed || out.Response.UID != "u-1" {
		t.Fatalf("valid: %+v", out.Response)
	}
	bad := strings.Replace(goodTP, `"sources":[{"match":{"weft.io/service":"*"}}]`, `"sources":[]`, 1)
	_, out = post(t, v, review("TrafficPermission", bad))
	if out.Response.Allowed || !strings.Contains(out.Response.Result.Message, "sources:") {
		t.Fatalf("invalid: %+v", out.Response.Result)
	}
	if c := out.Response.Result.Details.Causes; len(c) == 0 || c[0].Field != "sources" {
		t.Fatalf("causes %+v", c)
	}
	if got := testutil.ToFloat64(v.ReviewsMetric().WithLabelValues("denied")); got != 1 {
		t.Fatalf("denied counter %v", got)
	}
}

func TestReviewRefusesKindsOwnedByTheOtherSide(t *testing.T) {
	v := webhook.NewValidator("zone", "z1", "z1", slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	_, out := post(t, v, review("TrafficPermission", goodTP))
	if out.Response.Allowed || !strings.Contains(out.Response.Result.Message, "owned by the global control plane") {
		t.Fatalf("%+v", out.Response.Result)
	}
}

func TestBadRequestsAreRefusedAndBounded(t *testing.T) {
	v := webhook.NewValidator("standalone", "", "", slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	for name, body := range map[string][]byte{
		"not json":   []byte("{"),
		"no request": []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`),
		"wrong kind": []byte(`{"apiVersion":"v1","kind":"Pod","request":{}}`),
		"too large":  append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":"`), bytes.Repeat([]byte("a"), webhook.MaxReviewSize)...),
	} {
		if code, _ := post(t, v, body); code == http.StatusOK {
			t.Errorf("%s: answered 200", name)
		}
	}
	_, out := post(t, v, review("Pod", `{}`))
	if out.Response.Allowed {
		t.Error("a non-Weft kind was allowed")
	}
}

func FuzzReview(f *testing.F) {
	f.Add(review("TrafficPermission", goodTP))
	f.Add(review("Mesh", `{"metadata":{"name":"m"},"spec":{"mtls":{"backends":[{"name":"ca","type":"builtin"}]}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"group":"weft.io","kind":"Dataplane"},"operation":"CREATE","object":{"spec":[]}}}`))
	v := webhook.NewValidator("standalone", "", "", slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := webhook.DecodeReview(body)
		if err != nil {
			return
		}
		resp := v.Review(r.Request)
		if resp == nil || resp.UID != r.Request.UID {
			t.Fatalf("response %+v", resp)
		}
	})
}
