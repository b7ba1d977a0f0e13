package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/store"
)

// DefaultXDSAddress is the default of --xds-address: every replica behind
// the name (any replica answers; see docs/api-server.md).
const DefaultXDSAddress = "dns:///localhost:5678"

// maxInspectResponse bounds a forwarded inspect answer (the xds-server
// bounds a config dump's resources to 4 MiB of JSON).
const maxInspectResponse = 16 << 20

// XDSConfig locates the xds-server that answers config dumps and policy
// previews. The connection is TLS trusting the control-plane CA (what the
// xds-server serves by default) unless CAFile or Insecure says otherwise;
// each call carries the API caller's own token, never one of the
// api-server's.
type XDSConfig struct {
	// Address is a gRPC target; empty turns the inspect endpoints off
	// (501).
	Address string
	// CAFile verifies the xds-server's certificate instead of the
	// control-plane CA.
	CAFile string
	// Insecure dials in plaintext (xds-server --insecure-dev).
	Insecure bool
	// Conn, when set, is used instead of dialling (in-process, tests).
	Conn grpc.ClientConnInterface
	// AddressFunc, when set, gives the address at the first call instead
	// of Address (weftctl up starts the xds-server after the api-server).
	AddressFunc func() string
}

// RegisterFlags adds the --xds-* flags.
func (c *XDSConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Address, "xds-address", c.Address, "xds-server gRPC target for config dumps and policy previews (empty: those endpoints answer 501)")
	fs.StringVar(&c.CAFile, "xds-ca-file", c.CAFile, "CA bundle verifying the xds-server (default: the control-plane CA)")
	fs.BoolVar(&c.Insecure, "xds-insecure", c.Insecure, "dial the xds-server in plaintext (only with xds-server --insecure-dev; callers' tokens cross the network in the clear)")
}

// dialXDS returns the connection to the xds-server (nil when none is
// configured) and its address for messages.
func (a *App) dialXDS(st *store.Store, tp trace.TracerProvider) (grpc.ClientConnInterface, string, error) {
	c := a.cfg.XDS
	if c.Conn != nil {
		return c.Conn, "in-process", nil
	}
	if c.Address == "" && c.AddressFunc == nil {
		return nil, "", nil
	}
	var creds credentials.TransportCredentials
	switch {
	case c.Insecure && c.CAFile != "":
		return nil, "", errors.New("xds-insecure and xds-ca-file exclude each other")
	case c.Insecure:
		creds = insecure.NewCredentials()
	case c.CAFile != "":
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, "", fmt.Errorf("xds-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "", errors.New("xds-ca-file: no certificates found")
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	default:
		creds = credentials.NewTLS(controlPlaneTLS(st))
	}
	opts := append(grpcx.ClientOptions(grpcx.WithTracerProvider(tp)),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxInspectResponse)))
	if c.AddressFunc != nil {
		l := &lazyConn{address: c.AddressFunc, opts: opts}
		a.lazyXDS = l
		return l, "(set at start)", nil
	}
	conn, err := grpc.NewClient(c.Address, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("xds-address: %w", err)
	}
	a.xdsConn = conn
	return conn, c.Address, nil
}

// lazyConn dials at its first call.
type lazyConn struct {
	address func() string
	opts    []grpc.DialOption
	mu      sync.Mutex
	conn    *grpc.ClientConn
}

func (l *lazyConn) get() (*grpc.ClientConn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		return l.conn, nil
	}
	addr := l.address()
	if addr == "" {
		return nil, status.Error(codes.Unavailable, "the xds-server has not started yet")
	}
	conn, err := grpc.NewClient(addr, l.opts...)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "xds-server at %s: %v", addr, err)
	}
	l.conn = conn
	return conn, nil
}

func (l *lazyConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	c, err := l.get()
	if err != nil {
		return err
	}
	return c.Invoke(ctx, method, args, reply, opts...)
}

func (l *lazyConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c, err := l.get()
	if err != nil {
		return nil, err
	}
	return c.NewStream(ctx, desc, method, opts...)
}

func (l *lazyConn) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close()
	}
}

// controlPlaneTLS verifies the server against the control-plane CA, read
// from etcd at each handshake (the CA may not exist yet when the
// api-server starts, and may rotate).
func controlPlaneTLS(st *store.Store) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Not skipped: VerifyConnection below verifies the chain and the
		// name against the control-plane CA.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("xds-server presented no certificate")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			pool, err := cptls.Pool(ctx, st)
			if err != nil {
				return fmt.Errorf("control-plane CA: %w", err)
			}
			opts := x509.VerifyOptions{Roots: pool, DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err = cs.PeerCertificates[0].Verify(opts)
			return err
		},
	}
}
