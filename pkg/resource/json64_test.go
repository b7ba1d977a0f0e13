package resource_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Insight counters are JSON numbers in the flat form (protojson writes
// 64-bit integers as strings); timestamps stay RFC 3339 strings, and the
// result decodes back to the same message.
func TestInsightCountersAreNumbers(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	spec := &meshv1.DataplaneInsight{
		Subscriptions: []*meshv1.DiscoverySubscription{{
			Id: "s1", ControlPlaneInstanceId: "xds-1", ConnectTime: resource.Timestamp(now),
			Types: map[string]*meshv1.SyncTypeStatus{"type.googleapis.com/envoy.config.cluster.v3.Cluster": {
				LastVersion: "abc", Resources: 2, ResponsesSent: 7, Acks: 6, Nacks: 1, LastError: "<bad>",
			}},
		}},
		Mtls: &meshv1.DataplaneInsight_MTLS{CertificateRegenerations: 18446744073709551615, IssuedBackend: "ca-1"},
	}
	r := resource.New(resource.DataplaneInsightType, "default", "web-1")
	r.Spec = spec
	js, err := resource.MarshalJSON(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"resources":2,"responsesSent":7,"acks":6,"nacks":1`, `"certificateRegenerations":18446744073709551615`,
		`"connectTime":"2026-01-02T03:04:05Z"`, `"lastError":"<bad>"`, `"lastVersion":"abc"`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("%s lacks %s", js, want)
		}
	}
	if !json.Valid(js) {
		t.Fatalf("invalid JSON: %s", js)
	}
	back, err := resource.Unmarshal(js, resource.DataplaneInsightType)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back.Spec, spec) {
		t.Fatalf("round trip: %v != %v", back.Spec, spec)
	}
	// Types without 64-bit fields are written exactly as before.
	dp := resource.New(resource.DataplaneType, "default", "web-1")
	dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1"}}
	if js, _ := resource.MarshalJSON(dp); !strings.Contains(string(js), `"networking":{"address":"10.0.0.1"}`) {
		t.Fatalf("dataplane: %s", js)
	}
}

func TestZoneState(t *testing.T) {
	t0 := resource.Timestamp(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	t1 := resource.Timestamp(time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC))
	enabled := &meshv1.Zone{}
	disabled := &meshv1.Zone{Enabled: wrapperspb.Bool(false)}
	open := &meshv1.ZoneInsight{Subscriptions: []*meshv1.ZoneInsight_Subscription{{ConnectTime: t0, DisconnectTime: t1}, {ConnectTime: t1}}}
	closed := &meshv1.ZoneInsight{Subscriptions: []*meshv1.ZoneInsight_Subscription{{ConnectTime: t0, DisconnectTime: t1}}}
	for _, tc := range []struct {
		z            *meshv1.Zone
		ins          *meshv1.ZoneInsight
		state, cause string
	}{
		{enabled, open, resource.ZoneOnline, ""},
		{disabled, open, resource.ZoneOffline, "disabled on global"},
		{enabled, nil, resource.ZoneOffline, "never connected"},
		{enabled, closed, resource.ZoneOffline, "disconnected since 2026-01-02T04:00:00Z: check"},
		{enabled, &meshv1.ZoneInsight{Subscriptions: []*meshv1.ZoneInsight_Subscription{{ConnectTime: t0, DisconnectTime: t1, LastError: "zone \"east\" was disabled on global"}}},
			resource.ZoneOffline, "disconnected since 2026-01-02T04:00:00Z: zone \"east\" was disabled on global"},
		{enabled, &meshv1.ZoneInsight{Subscriptions: []*meshv1.ZoneInsight_Subscription{{ConnectTime: t0, DisconnectTime: t0}, {DisconnectTime: t1, LastError: "invalid token: token is expired"}}},
			resource.ZoneOffline, "refused since 2026-01-02T04:00:00Z: invalid token: token is expired"},
	} {
		state, reason := resource.ZoneState(tc.z, tc.ins)
		if state != tc.state || !strings.Contains(reason, tc.cause) || (tc.cause == "") != (reason == "") {
			t.Errorf("ZoneState(%v, %v) = %q, %q; want %q, %q", tc.z, tc.ins, state, reason, tc.state, tc.cause)
		}
	}
}
