package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/k8s-controller/internal/webhook"
	"github.com/weftmesh/weft/pkg/telemetry"
)

// Path is where the API server sends pod admission reviews (the
// MutatingWebhookConfiguration's path).
const Path = "/inject"

// Injector answers pod admission reviews.
type Injector struct {
	cfg Config
	// namespace returns a pod's namespace (nil, nil: unknown).
	namespace func(ctx context.Context, name string) (*corev1.Namespace, error)
	log       *slog.Logger
	reviews   *prometheus.CounterVec
}

// NewInjector returns an Injector; namespace looks up a pod's namespace
// (for its injection label and mesh annotation).
func NewInjector(cfg Config, namespace func(ctx context.Context, name string) (*corev1.Namespace, error), log *slog.Logger, reg prometheus.Registerer) *Injector {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_k8s_injections_total",
		Help: "Pod admission reviews answered by the injection webhook, by result (injected, skipped, denied, bad_request, error).",
	}, []string{"result"})
	return &Injector{cfg: cfg, namespace: namespace, log: log, reviews: telemetry.MustRegister(reg, c)}
}

// ServeHTTP handles POST Path.
func (in *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, webhook.MaxReviewSize))
	if err != nil {
		in.reviews.WithLabelValues("bad_request").Inc()
		http.Error(w, fmt.Sprintf("request body: %v (limit %d bytes)", err, webhook.MaxReviewSize), http.StatusRequestEntityTooLarge)
		return
	}
	review, err := webhook.DecodeReview(body)
	if err != nil {
		in.reviews.WithLabelValues("bad_request").Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	review.Response = in.Review(ctx, review.Request)
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}

// Review decides one pod admission: allowed, with the patch when the pod
// is injected; refused when its Weft annotations are invalid.
func (in *Injector) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Operation != admissionv1.Create || req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		in.reviews.WithLabelValues("skipped").Inc()
		return resp
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		in.reviews.WithLabelValues("denied").Inc()
		return deny(resp, "the object is not a Pod: "+err.Error())
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	ns, err := in.namespace(ctx, pod.Namespace)
	if err != nil {
		// Failing closed would block every pod of the cluster on an API
		// hiccup; failing open skips injection of this pod only: log it.
		in.reviews.WithLabelValues("error").Inc()
		in.log.Warn("namespace lookup failed; the pod is admitted without injection (recreate it to inject)", "namespace", pod.Namespace, "error", err)
		return resp
	}
	ops, skip, err := Mutate(&pod, ns, in.cfg)
	if err != nil {
		in.reviews.WithLabelValues("denied").Inc()
		return deny(resp, "weft injection: "+err.Error())
	}
	if skip != "" {
		in.reviews.WithLabelValues("skipped").Inc()
		return resp
	}
	patch, err := Patch(ops)
	if err != nil {
		in.reviews.WithLabelValues("error").Inc()
		return deny(resp, "weft injection: "+err.Error())
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	in.reviews.WithLabelValues("injected").Inc()
	return resp
}

func deny(resp *admissionv1.AdmissionResponse, msg string) *admissionv1.AdmissionResponse {
	resp.Allowed = false
	resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: msg}
	return resp
}
