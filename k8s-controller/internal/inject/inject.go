// Package inject is the mutating admission webhook that adds Weft to the
// pods of the mesh: the weft-dp container (Envoy mode, or proxyless gRPC
// with GRPC_XDS_BOOTSTRAP set in the application's containers), the init
// container that runs `weft-dp iptables --apply` (Envoy mode), and the
// token, workdir and control-plane CA volumes. Mutate is the pure rule (pod
// → JSON patch); Injector serves it.
package inject

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
	"github.com/weftmesh/weft/k8s-controller/internal/podtoken"
	"github.com/weftmesh/weft/pkg/tproxy"
	"github.com/weftmesh/weft/pkg/xdsnames"
)

// Names of what the webhook adds.
const (
	SidecarName   = "weft-dp"
	InitName      = "weft-init"
	TokenVolume   = "weft-dp-token"
	WorkVolume    = "weft-dp-workdir"
	CPCAVolume    = "weft-cp-ca"
	TokenDir      = "/var/run/weft/token"
	WorkDir       = "/var/run/weft/dp"
	CPCADir       = "/var/run/weft/cp-ca"
	TokenKey      = "token"
	CPCAKey       = "ca.pem"
	BootstrapEnv  = "GRPC_XDS_BOOTSTRAP"
	DefaultSecret = "weft-dp-token"
)

// Config is what every injected pod gets.
type Config struct {
	// Image is the weft-dp image (with Envoy, for Envoy mode).
	Image string
	// CP is the xds-server address as the pod dials it (weft-dp --cp).
	CP string
	// CPCAConfigMap names a ConfigMap in the pod's namespace whose ca.pem
	// verifies the xds-server (weft-dp --cp-ca-file); empty: plaintext,
	// only for an xds-server run with --insecure-dev.
	CPCAConfigMap string
	// TokenSecret names the Secret in the pod's namespace whose "token" key
	// is the dataplane token (default DefaultSecret).
	TokenSecret string
	// DNSServer is the dns-server address the init container redirects DNS
	// to; invalid: DNS is not redirected.
	DNSServer netip.AddrPort
	// ProxyUID is the sidecar's UID (default tproxy.DefaultProxyUID).
	ProxyUID int64
	// PodTokens mounts each pod's own token Secret,
	// podtoken.SecretName(<pod name>), which the pods controller writes,
	// instead of the shared TokenSecret. A pod created with only
	// generateName is given its name here (generateName + 5 random
	// characters, as the API server would), since the Secret is named
	// after it.
	PodTokens bool
	// rand picks generated name suffixes (tests); nil: crypto/rand.
	rand func([]byte)
}

// Op is one JSON patch (RFC 6902) operation.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Skip says why a pod is left as it is (not an error).
type Skip string

// Mutate returns the JSON patch that injects pod (in namespace ns, nil if
// unknown), or a Skip reason, or an error for a pod whose annotations are
// invalid (the admission is then refused with it).
func Mutate(pod *corev1.Pod, ns *corev1.Namespace, cfg Config) ([]Op, Skip, error) {
	switch {
	case !annotations.InMesh(pod, ns):
		return nil, "not in the mesh", nil
	case pod.Annotations[annotations.Injected] != "":
		return nil, "already injected", nil
	case pod.Spec.HostNetwork:
		return nil, "host network", nil
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == SidecarName {
			return nil, "already has a " + SidecarName + " container", nil
		}
	}
	proxyType := annotations.ProxyTypeOf(pod)
	if v := pod.Annotations[annotations.ProxyType]; v != "" && v != annotations.ProxyTypeEnvoy && v != annotations.ProxyTypeGRPC {
		return nil, "", fmt.Errorf("metadata.annotations[%s]: %q is not %s or %s", annotations.ProxyType, v, annotations.ProxyTypeEnvoy, annotations.ProxyTypeGRPC)
	}
	if cfg.TokenSecret == "" {
		cfg.TokenSecret = DefaultSecret
	}
	if cfg.ProxyUID == 0 {
		cfg.ProxyUID = tproxy.DefaultProxyUID
	}
	var ops []Op
	mesh := annotations.MeshOf(pod, ns)
	secretName := cfg.TokenSecret
	if cfg.PodTokens {
		name := pod.Name
		if name == "" {
			if pod.GenerateName == "" {
				return nil, "", fmt.Errorf("metadata.name: a pod needs a name or generateName")
			}
			name = generateName(pod.GenerateName, cfg.rand)
			ops = append(ops, Op{Op: "add", Path: "/metadata/name", Value: name})
		}
		secretName = podtoken.SecretName(name)
	}

	// Envoy mode: the init container redirects the pod's traffic.
	if proxyType == annotations.ProxyTypeEnvoy {
		tp := tproxy.Default()
		tp.ProxyUID = uint32(cfg.ProxyUID)
		tp.DNSServer = cfg.DNSServer
		for _, a := range []struct {
			key string
			dst *[]uint16
		}{{annotations.InboundPorts, &tp.InboundPorts}, {annotations.ExcludeInboundPorts, &tp.ExcludeInboundPorts},
			{annotations.ExcludeOutboundPorts, &tp.ExcludeOutboundPorts}} {
			v, ok := pod.Annotations[a.key]
			if !ok {
				continue
			}
			ps, err := tproxy.ParsePorts(v)
			if err != nil {
				return nil, "", fmt.Errorf("metadata.annotations[%s]: %w", a.key, err)
			}
			*a.dst = ps
		}
		if err := tp.Validate(); err != nil {
			return nil, "", fmt.Errorf("transparent proxy settings: %w", err)
		}
		root, no := int64(0), false
		init := corev1.Container{
			Name:    InitName,
			Image:   cfg.Image,
			Command: []string{"weft-dp"},
			Args:    append([]string{"iptables", "--apply"}, tp.Args()...),
			SecurityContext: &corev1.SecurityContext{RunAsUser: &root, RunAsNonRoot: &no,
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}}},
			Resources: smallResources(),
		}
		ops = appendTo(ops, "/spec/initContainers", len(pod.Spec.InitContainers), init)
	}

	// The sidecar.
	args := []string{"run", "--cp=" + cfg.CP, "--mesh=" + mesh, "--name=$(WEFT_POD_NAME).$(WEFT_POD_NAMESPACE)",
		"--token-file=" + path.Join(TokenDir, TokenKey), "--proxy-type=" + proxyType, "--workdir=" + WorkDir}
	if cfg.CPCAConfigMap != "" {
		args = append(args, "--cp-ca-file="+path.Join(CPCADir, CPCAKey))
	}
	mounts := []corev1.VolumeMount{{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true}, {Name: WorkVolume, MountPath: WorkDir}}
	if cfg.CPCAConfigMap != "" {
		mounts = append(mounts, corev1.VolumeMount{Name: CPCAVolume, MountPath: CPCADir, ReadOnly: true})
	}
	uid, yes, no := cfg.ProxyUID, true, false
	sidecar := corev1.Container{
		Name:  SidecarName,
		Image: cfg.Image,
		Args:  args,
		Env: []corev1.EnvVar{
			{Name: "WEFT_POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "WEFT_POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		},
		VolumeMounts: mounts,
		SecurityContext: &corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem: &yes, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
		Resources: smallResources(),
	}

	// Proxyless: the application reads the bootstrap and certificates
	// weft-dp keeps in the shared workdir.
	if proxyType == annotations.ProxyTypeGRPC {
		bootstrap := path.Join(WorkDir, xdsnames.GRPCBootstrapFile)
		for i, c := range pod.Spec.Containers {
			base := fmt.Sprintf("/spec/containers/%d", i)
			ops = appendTo(ops, base+"/env", len(c.Env), corev1.EnvVar{Name: BootstrapEnv, Value: bootstrap})
			ops = appendTo(ops, base+"/volumeMounts", len(c.VolumeMounts), corev1.VolumeMount{Name: WorkVolume, MountPath: WorkDir, ReadOnly: true})
		}
	}
	ops = appendTo(ops, "/spec/containers", len(pod.Spec.Containers), sidecar)

	vols := []corev1.Volume{
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secretName}}},
		{Name: WorkVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
	}
	if cfg.CPCAConfigMap != "" {
		vols = append(vols, corev1.Volume{Name: CPCAVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cfg.CPCAConfigMap}}}})
	}
	n := len(pod.Spec.Volumes)
	for _, v := range vols {
		ops = appendTo(ops, "/spec/volumes", n, v)
		n++
	}
	if pod.Annotations == nil {
		ops = append(ops, Op{Op: "add", Path: "/metadata/annotations", Value: map[string]string{annotations.Injected: proxyType}})
	} else {
		ops = append(ops, Op{Op: "add", Path: "/metadata/annotations/" + escape(annotations.Injected), Value: proxyType})
	}
	return ops, "", nil
}

// nameChars are the API server's generated-name characters (no vowels, no
// confusable digits).
const nameChars = "bcdfghjklmnpqrstvwxz2456789"

// generateName is base + 5 random characters, base cut as the API server
// cuts it (a name is at most 253 characters; 58 leaves room for the
// suffix within a DNS label).
func generateName(base string, rnd func([]byte)) string {
	if len(base) > 58 {
		base = base[:58]
	}
	if rnd == nil {
		rnd = func(b []byte) { _, _ = rand.Read(b) }
	}
	b := make([]byte, 5)
	rnd(b)
	for i := range b {
		b[i] = nameChars[int(b[i])%len(nameChars)]
	}
	return base + string(b)
}

// appendTo adds v at the end of the array at p, which has n elements (an
// absent array is added whole).
func appendTo(ops []Op, p string, n int, v any) []Op {
	if n == 0 {
		// An absent (or empty) array: add it whole, unless an earlier op
		// of this patch already did.
		for _, o := range ops {
			if o.Path == p {
				return append(ops, Op{Op: "add", Path: p + "/-", Value: v})
			}
		}
		return append(ops, Op{Op: "add", Path: p, Value: []any{v}})
	}
	return append(ops, Op{Op: "add", Path: p + "/-", Value: v})
}

// escape is a JSON pointer token (RFC 6901).
func escape(s string) string { return strings.NewReplacer("~", "~0", "/", "~1").Replace(s) }

func smallResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")}}
}

// Patch encodes ops.
func Patch(ops []Op) ([]byte, error) { return json.Marshal(ops) }
