// Package certs keeps a workload certificate for every connected dataplane
// of an mTLS mesh. The xds-server holds no CA key: it generates the
// workload's key, asks ca-service to sign its public key, and hands the
// result to the generators (SDS for Envoy, weft-dp's files for grpc-go).
// Certificates are renewed at 4/5 of their lifetime and re-signed when the
// mesh's trust bundle changes (CA rotation).
package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"

	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
)

// Info describes the current certificate of a dataplane.
type Info struct {
	NotAfter      time.Time
	Issued        time.Time
	Regenerations uint64
	Backend       string
}

// Manager issues and renews certificates.
type Manager struct {
	client   cav1.CertificateAuthorityServiceClient
	log      *slog.Logger
	validity time.Duration
	onUpdate func(mesh, name string)

	mu      sync.Mutex
	ctx     context.Context
	entries map[string]*entry
	bundles map[string]*bundleWatch
}

type entry struct {
	mesh, name string
	refs       int // under Manager.mu
	ctx        context.Context
	cancel     context.CancelFunc

	mu    sync.Mutex
	token string            // the proxy's dataplane token
	cause trace.SpanContext // the first request's parent trace
	id    *meshview.Identity
	info  Info
	// An entry has no goroutine of its own while it waits: a signing
	// request runs on a goroutine that ends with it (issue), and the next
	// one is a timer (renewal at 4/5 of the lifetime, or a retry after
	// backoff). running: a request is in flight; again: a renewal was
	// asked for meanwhile (a CA rotation), so issue goes once more.
	timer   *time.Timer
	running bool
	again   bool
	backoff time.Duration
}

type bundleWatch struct {
	cancel context.CancelFunc
	refs   int
}

// New returns a manager; onUpdate is called after a dataplane's
// certificate was issued or renewed. validity 0 uses the CA's default.
func New(ctx context.Context, client cav1.CertificateAuthorityServiceClient, validity time.Duration, log *slog.Logger, onUpdate func(mesh, name string)) *Manager {
	return &Manager{client: client, log: log, validity: validity, onUpdate: onUpdate, ctx: ctx,
		entries: map[string]*entry{}, bundles: map[string]*bundleWatch{}}
}

func key(mesh, name string) string { return mesh + "/" + name }

// Acquire starts keeping a certificate for mesh/name (counted: call Release
// once per Acquire). token is the proxy's dataplane token: ca-service
// verifies it and certifies only the services it is bound to. The latest
// one given is used for renewals.
//
// cause, when valid, is the span that asked for the certificate (the proxy's
// reconcile): the first signing request is made in its trace, so ca-service's
// spans for it join the proxy's trace. Renewals start their own traces.
func (m *Manager) Acquire(mesh, name, token string, cause trace.SpanContext) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key(mesh, name)
	if e := m.entries[k]; e != nil {
		e.refs++
		if token != "" {
			e.mu.Lock()
			e.token = token
			e.mu.Unlock()
		}
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	e := &entry{mesh: mesh, name: name, token: token, cause: cause, refs: 1, ctx: ctx, cancel: cancel, backoff: minBackoff}
	m.entries[k] = e
	m.start(e)
	bw := m.bundles[mesh]
	if bw == nil {
		bctx, bcancel := context.WithCancel(m.ctx)
		bw = &bundleWatch{cancel: bcancel}
		m.bundles[mesh] = bw
		go m.watchBundle(bctx, mesh)
	}
	bw.refs++
}

// Release drops one reference; the last one stops renewals.
func (m *Manager) Release(mesh, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key(mesh, name)
	e := m.entries[k]
	if e == nil {
		return
	}
	if e.refs--; e.refs > 0 {
		return
	}
	e.cancel()
	e.mu.Lock()
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	e.mu.Unlock()
	delete(m.entries, k)
	if bw := m.bundles[mesh]; bw != nil {
		if bw.refs--; bw.refs <= 0 {
			bw.cancel()
			delete(m.bundles, mesh)
		}
	}
}

// Identity returns the current certificate of mesh/name, nil until issued.
func (m *Manager) Identity(mesh, name string) (*meshview.Identity, Info) {
	m.mu.Lock()
	e := m.entries[key(mesh, name)]
	m.mu.Unlock()
	if e == nil {
		return nil, Info{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.id, e.info
}

// Get returns the current certificate of mesh/name, nil until issued.
func (m *Manager) Get(mesh, name string) *meshview.Identity {
	id, _ := m.Identity(mesh, name)
	return id
}

const minBackoff = 200 * time.Millisecond

// start issues (or renews) e's certificate now: a signing request on a
// goroutine that lives only as long as the request. One already in flight
// is asked to go once more when it is done.
//
// Before, every entry had a goroutine for its life (keep: issue, then wait
// for the renewal timer or a rotation), one more goroutine per connected
// proxy of an mTLS mesh, parked with its stack for days between renewals.
func (m *Manager) start(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx.Err() != nil {
		return
	}
	if e.running {
		e.again = true
		return
	}
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	e.running = true
	go m.issueEntry(e)
}

// issueEntry signs e's certificate, then schedules the next request: the
// renewal at 4/5 of the lifetime, or a retry with backoff.
func (m *Manager) issueEntry(e *entry) {
	for {
		e.mu.Lock()
		tok, cause := e.token, e.cause
		e.cause = trace.SpanContext{} // only the first request continues the cause's trace
		e.again = false
		e.mu.Unlock()
		ctx := e.ctx
		if cause.IsValid() {
			ctx = trace.ContextWithSpanContext(ctx, cause)
		}
		id, info, err := m.issue(ctx, e.mesh, e.name, tok)
		var wait time.Duration
		e.mu.Lock()
		if err != nil {
			if e.ctx.Err() != nil {
				e.running = false
				e.mu.Unlock()
				return
			}
			wait = e.backoff
			e.backoff = min(e.backoff*2, 30*time.Second)
		} else {
			e.backoff = minBackoff
			info.Regenerations = e.info.Regenerations + 1
			e.id, e.info = id, info
			// Renew at 4/5 of the lifetime.
			life := info.NotAfter.Sub(info.Issued)
			wait = max(time.Until(info.Issued.Add(life*4/5)), time.Second)
		}
		e.mu.Unlock()
		if err != nil {
			m.log.Warn("certificate not issued, retrying", "dataplane", key(e.mesh, e.name), "err", err, "retry", wait)
		} else {
			m.onUpdate(e.mesh, e.name)
		}
		e.mu.Lock()
		if e.ctx.Err() != nil {
			e.running = false
			e.mu.Unlock()
			return
		}
		if e.again {
			// A rotation asked for a new certificate while this one
			// was being signed (possibly under the old CA).
			e.mu.Unlock()
			continue
		}
		e.running = false
		e.timer = time.AfterFunc(wait, func() { m.start(e) })
		e.mu.Unlock()
		return
	}
}

func (m *Manager) issue(ctx context.Context, mesh, name, token string) (*meshview.Identity, Info, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, Info{}, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, Info{}, err
	}
	req := &cav1.SignWorkloadCertificateRequest{Mesh: mesh, Dataplane: name, PublicKey: pub, DataplaneToken: token}
	if m.validity > 0 {
		req.Validity = durationpb.New(m.validity)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := m.client.SignWorkloadCertificate(ctx, req)
	if err != nil {
		return nil, Info{}, fmt.Errorf("sign certificate for %s/%s: %w", mesh, name, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, Info{}, err
	}
	id := &meshview.Identity{
		CertChainPEM:   resp.GetCertificateChainPem(),
		KeyPEM:         pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		TrustBundlePEM: resp.GetTrustBundlePem(),
	}
	// Lifetime counts from when we got the certificate: CAs backdate
	// not_before for clock skew, which would otherwise pull renewal early.
	info := Info{NotAfter: resp.GetNotAfter().AsTime(), Issued: time.Now(), Backend: resp.GetBackend()}
	if resp.GetNotAfter() == nil || !info.NotAfter.After(info.Issued) {
		return nil, Info{}, fmt.Errorf("sign certificate for %s/%s: CA returned no future not_after", mesh, name)
	}
	return id, info, nil
}

// watchBundle re-signs every certificate of the mesh when its trust bundle
// changes (a CA rotation adds or removes roots).
func (m *Manager) watchBundle(ctx context.Context, mesh string) {
	backoff := 200 * time.Millisecond
	last := ""
	for ctx.Err() == nil {
		stream, err := m.client.WatchTrustBundle(ctx, &cav1.GetTrustBundleRequest{Mesh: mesh})
		if err == nil {
			for {
				b, rerr := stream.Recv()
				if rerr != nil {
					err = rerr
					break
				}
				backoff = 200 * time.Millisecond
				if last != "" && b.GetVersion() != last {
					m.log.Info("trust bundle changed, re-signing certificates", "mesh", mesh, "version", b.GetVersion())
					m.renewMesh(mesh)
				}
				last = b.GetVersion()
			}
		}
		if ctx.Err() != nil {
			return
		}
		m.log.Debug("trust bundle watch ended, retrying", "mesh", mesh, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (m *Manager) renewMesh(mesh string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries {
		if e.mesh == mesh {
			m.start(e)
		}
	}
}
