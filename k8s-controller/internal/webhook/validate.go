// Package webhook serves the validating admission webhook of the Weft
// CRDs: a custom resource is refused at `kubectl apply` time with the
// field-path errors the REST API gives for the same resource
// (crd.ToResource: the REST API's decoding and validation).
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/k8s-controller/crd"
	"github.com/weftmesh/weft/pkg/telemetry"
)

// ValidatePath is where the API server sends admission reviews of Weft
// custom resources (the ValidatingWebhookConfiguration's path).
const ValidatePath = "/validate"

// MaxReviewSize bounds an AdmissionReview request body: the custom
// resource (at most crd.MaxObjectSize) plus its old version on an update
// and the review's own fields.
const MaxReviewSize = 2*crd.MaxObjectSize + 64<<10

// maxCauses bounds the causes returned in one answer (and logged).
const maxCauses = 50

// Validator answers admission reviews.
type Validator struct {
	// Mode and Zone are the control plane's (see crd.Writable).
	Mode, Zone, Origin string
	Log                *slog.Logger
	reviews            *prometheus.CounterVec
}

// NewValidator returns a Validator reporting to reg.
func NewValidator(mode, zone, origin string, log *slog.Logger, reg prometheus.Registerer) *Validator {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_k8s_webhook_reviews_total",
		Help: "Admission reviews of Weft custom resources answered, by result (allowed, denied, bad_request).",
	}, []string{"result"})
	return &Validator{Mode: mode, Zone: zone, Origin: origin, Log: log, reviews: telemetry.MustRegister(reg, c)}
}

// ReviewsMetric is the reviews counter (tests).
func (v *Validator) ReviewsMetric() *prometheus.CounterVec { return v.reviews }

// ServeHTTP handles POST ValidatePath.
func (v *Validator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReviewSize))
	if err != nil {
		v.reviews.WithLabelValues("bad_request").Inc()
		http.Error(w, fmt.Sprintf("request body: %v (limit %d bytes)", err, MaxReviewSize), http.StatusRequestEntityTooLarge)
		return
	}
	review, err := DecodeReview(body)
	if err != nil {
		v.reviews.WithLabelValues("bad_request").Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp := v.Review(review.Request)
	review.Response = resp
	review.Request = nil
	if resp.Allowed {
		v.reviews.WithLabelValues("allowed").Inc()
	} else {
		v.reviews.WithLabelValues("denied").Inc()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}

// DecodeReview parses an AdmissionReview v1 request.
func DecodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	if len(body) > MaxReviewSize {
		return nil, fmt.Errorf("admission review is %d bytes, more than the limit of %d", len(body), MaxReviewSize)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("not an AdmissionReview: %w", err)
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("apiVersion %q kind %q: want admission.k8s.io/v1 AdmissionReview", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, errors.New("admission review has no request")
	}
	return &review, nil
}

// Review decides one admission request.
func (v *Validator) Review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return resp
	}
	k, ok := crd.KindOf(req.Kind.Kind)
	if req.Kind.Group != crd.Group || !ok {
		return deny(resp, fmt.Sprintf("%s/%s is not a Weft kind", req.Kind.Group, req.Kind.Kind), nil)
	}
	if err := crd.Writable(k, v.Mode, v.Zone); err != nil {
		return deny(resp, err.Error(), nil)
	}
	var obj map[string]any
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return deny(resp, "the object is not JSON: "+err.Error(), nil)
	}
	if _, err := crd.ToResource(k, obj, v.Origin); err != nil {
		causes := crd.Causes(err)
		if len(causes) > maxCauses {
			causes = causes[:maxCauses]
		}
		msgs := make([]string, len(causes))
		st := make([]metav1.StatusCause, len(causes))
		for i, c := range causes {
			msgs[i] = c.Message
			if c.Field != "" {
				msgs[i] = c.Field + ": " + c.Message
			}
			st[i] = metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: c.Field, Message: c.Message}
		}
		v.Log.Info("refused a custom resource", "kind", k.Kind, "name", req.Name, "user", req.UserInfo.Username, "causes", len(causes))
		return deny(resp, "invalid "+k.Kind+": "+strings.Join(msgs, "; "), st)
	}
	return resp
}

func deny(resp *admissionv1.AdmissionResponse, msg string, causes []metav1.StatusCause) *admissionv1.AdmissionResponse {
	resp.Allowed = false
	resp.Result = &metav1.Status{Status: metav1.StatusFailure, Message: msg, Reason: metav1.StatusReasonInvalid, Code: http.StatusUnprocessableEntity,
		Details: &metav1.StatusDetails{Causes: causes}}
	return resp
}
