package generator

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// SDS secret names served to Envoy (the wire contract with weft-dp lives in
// pkg/xdsnames).
const (
	IdentityCertSecret = xdsnames.IdentityCertSecret
	MeshCASecret       = xdsnames.MeshCASecret
)

// CertProviderInstance is the grpc-go bootstrap certificate provider
// instance weft-dp writes (file_watcher over D/certs).
const CertProviderInstance = xdsnames.CertProviderInstance

func sdsConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsSource()}
}

func tlsSocket(ctx proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}

// envoyDownstreamTLS requires a client certificate chaining to the mesh CA
// and naming an identity of this mesh.
func envoyDownstreamTLS(mesh string) *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig(IdentityCertSecret)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tlsv3.SubjectAltNameMatcher_URI,
							Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: SpiffeID(mesh, "")}},
						}},
					},
					ValidationContextSdsSecretConfig: sdsConfig(MeshCASecret),
				},
			},
		},
	}
}

// envoyUpstreamTLS presents the proxy's identity and expects the service's.
func envoyUpstreamTLS(mesh, service string) *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{
		Sni: SNI(mesh, service),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig(IdentityCertSecret)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tlsv3.SubjectAltNameMatcher_URI,
							Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: SpiffeID(mesh, service)}},
						}},
					},
					ValidationContextSdsSecretConfig: sdsConfig(MeshCASecret),
				},
			},
		},
	}
}

func certProvider() *tlsv3.CertificateProviderPluginInstance {
	return &tlsv3.CertificateProviderPluginInstance{InstanceName: CertProviderInstance}
}

// grpcDownstreamTLS is what grpc-go servers accept: certificate provider
// instances only, no SAN matchers on the server side.
func grpcDownstreamTLS() *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: certProvider(),
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{CaCertificateProviderInstance: certProvider()},
			},
		},
	}
}

// grpcUpstreamTLS: certificate providers, SAN match on the service's SPIFFE
// ID, and the SNI (honoured by grpc-go with GRPC_EXPERIMENTAL_XDS_SNI=true).
func grpcUpstreamTLS(mesh, service string) *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{
		Sni: SNI(mesh, service),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: certProvider(),
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{
					CaCertificateProviderInstance: certProvider(),
					//lint:ignore SA1019 grpc-go v1.85 reads only match_subject_alt_names, not the typed field.
					MatchSubjectAltNames: []*matcherv3.StringMatcher{{
						MatchPattern: &matcherv3.StringMatcher_Exact{Exact: SpiffeID(mesh, service)},
					}},
				},
			},
		},
	}
}

func identitySecrets(id *Identity) []*tlsv3.Secret {
	if id == nil {
		return nil
	}
	return []*tlsv3.Secret{
		{Name: IdentityCertSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: id.CertChainPEM}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: id.KeyPEM}},
		}}},
		{Name: MeshCASecret, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: id.TrustBundlePEM}},
		}}},
	}
}
