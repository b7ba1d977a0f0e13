// Package kubetest runs a real kube-apiserver for tests: one per test
// binary, on its own embedded etcd, bound to 127.0.0.1 on a free port.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }
//
// and in a test:
//
//	srv := kubetest.Start(t) // skips when the binary is absent (see below)
//	cs := kubernetes.NewForConfigOrDie(srv.Config())
//	ns := srv.Namespace(t)
//
// The API server starts on the first Start and stops when Main returns.
// Tests of one package share it: give each test its own namespace
// (Server.Namespace) or its own object names.
//
// The binary is built by tools/kube-apiserver/build.sh into
// $WEFT_CACHE/bin/kube-apiserver-<Version> (WEFT_CACHE defaults to
// ~/.cache/weft); WEFT_KUBE_APISERVER names another binary. When it is
// absent, Start skips the test with the command that builds it, unless
// WEFT_REQUIRE_KUBE is set (CI), where it fails the test.
//
// The server runs with RBAC authorization, a static token file
// (Server.Config's token is in group system:masters), client certificates
// from a test CA (Server.UserConfig: any user and groups, with only the
// permissions RBAC grants them), --endpoint-reconciler-type=none,
// service-account keys generated in a temporary directory, and the
// ServiceAccount admission plugin off (there is no controller-manager to
// create the default service accounts). There is no kubelet and no
// controller-manager: tests create Pods and set their status themselves,
// and namespaces are never finalized (Namespace does not delete them).
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/etcdembed"
)

// Version is the kube-apiserver release the tests run; it is the default of
// tools/kube-apiserver/build.sh (TestVersionMatchesTheBuildScript).
const Version = "v1.37.2"

// Environment variables the harness reads.
const (
	// RequireEnv set to anything makes an absent binary a test failure.
	RequireEnv = "WEFT_REQUIRE_KUBE"
	// BinaryEnv names the kube-apiserver binary to run instead of the cached one.
	BinaryEnv = "WEFT_KUBE_APISERVER"
	// CacheEnv is the cache directory of tools/kube-apiserver/build.sh.
	CacheEnv = "WEFT_CACHE"
)

// Time limits. The machine running the tests may be loaded: they are
// generous, and only bound a failure.
const (
	readyTimeout = 3 * time.Minute
	stopTimeout  = 30 * time.Second
)

// BuildCommand is what a developer runs to get the binary.
const BuildCommand = "tools/kube-apiserver/build.sh"

// Binary returns the path of the kube-apiserver binary, or an error saying
// how to build it.
func Binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinaryEnv, p, err)
		}
		return p, nil
	}
	cache := os.Getenv(CacheEnv)
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no %s and no home directory: %w", CacheEnv, err)
		}
		cache = filepath.Join(home, ".cache", "weft")
	}
	p := filepath.Join(cache, "bin", "kube-apiserver-"+Version)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("kube-apiserver %s is not built (%s absent): run %s (about 4 minutes, cached afterwards)", Version, p, BuildCommand)
	}
	return p, nil
}

var shared struct {
	mu      sync.Mutex
	main    bool
	started bool
	srv     *Server
	err     error
	skip    string
}

// Main runs the package's tests and then stops the API server if one was
// started. Call it from TestMain: os.Exit(kubetest.Main(m)).
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		shared.srv.close()
	}
	return code
}

// Start returns the package's API server, starting it on first use. It
// skips the test when the binary is absent and WEFT_REQUIRE_KUBE is unset.
func Start(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatal("kubetest: call kubetest.Main from the package's TestMain (one API server per test binary)")
	}
	if !shared.started {
		shared.started = true
		bin, err := Binary()
		switch {
		case err != nil && os.Getenv(RequireEnv) != "":
			shared.err = fmt.Errorf("%w (%s is set)", err, RequireEnv)
		case err != nil:
			shared.skip = err.Error()
		default:
			shared.srv, shared.err = start(bin)
		}
	}
	if shared.skip != "" {
		t.Skip("kubetest: " + shared.skip)
	}
	if shared.err != nil {
		t.Fatalf("kubetest: %v", shared.err)
	}
	return shared.srv
}

// Server is a running kube-apiserver.
type Server struct {
	bin    string
	dir    string
	etcd   *etcdembed.Server
	port   int
	token  string
	caPEM  []byte
	ca     *ca.Authority
	mu     sync.Mutex
	proc   *process
	nsSeq  atomic.Int64
	stopMu sync.Mutex // held by a test between Stop and Restart
}

type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func start(bin string) (*Server, error) {
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Its own etcd: the API server's keys never mix with Weft's store.
	if s.etcd, err = etcdembed.Start(ctx, etcdembed.Config{Dir: filepath.Join(dir, "etcd"), AutoCompactionRetention: "0"}); err != nil {
		return nil, err
	}
	if err := s.writeCredentials(); err != nil {
		return nil, err
	}
	// A free port can be taken between our probe and the server's bind:
	// try a few.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		err = s.run()
		if err == nil || attempt == 2 || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// writeCredentials makes the serving certificate, the client CA, the token
// file and the service-account signing key.
func (s *Server) writeCredentials() error {
	caPEM, caKey, err := ca.GenerateRoot(ca.RootOptions{CommonName: "kubetest CA", Validity: 7 * 24 * time.Hour})
	if err != nil {
		return err
	}
	if s.ca, err = ca.Parse(caPEM, caKey, time.Now()); err != nil {
		return err
	}
	s.caPEM = caPEM
	now := time.Now()
	srvCert, srvKey, err := s.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    now.Add(7 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		return err
	}
	// SEC1 ("EC PRIVATE KEY"): the API server reads the public key of
	// --service-account-key-file from a private key only in that form.
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return err
	}
	saPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER})
	tok, err := randomToken()
	if err != nil {
		return err
	}
	s.token = tok
	files := map[string][]byte{
		"ca.crt":     caPEM,
		"server.crt": srvCert,
		"server.key": srvKey,
		"sa.key":     saPEM,
		// token,user,uid,"groups"
		"tokens.csv": []byte(tok + `,kubetest-admin,kubetest-admin,"system:masters"` + "\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ca.GenerateKey(ca.KeyECDSAP256, 0)
	if err != nil {
		return nil, nil, err
	}
	_, certPEM, err = s.ca.Sign(tmpl, key.Public())
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = ca.EncodeKey(key)
	return certPEM, keyPEM, err
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", b), nil
}

func (s *Server) args() []string {
	f := func(name string) string { return filepath.Join(s.dir, name) }
	return []string{
		"--etcd-servers=http://" + s.etcd.Endpoint(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(s.port),
		"--tls-cert-file=" + f("server.crt"),
		"--tls-private-key-file=" + f("server.key"),
		"--client-ca-file=" + f("ca.crt"),
		"--token-auth-file=" + f("tokens.csv"),
		"--anonymous-auth=false",
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + f("sa.key"),
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--allow-privileged=true",
		"--profiling=false",
		"--cert-dir=" + f("certs"),
		"--v=0",
	}
}

// run starts the process and waits for /readyz.
func (s *Server) run() error {
	logPath := filepath.Join(s.dir, "kube-apiserver.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	if err := s.waitReady(p); err != nil {
		s.stopProcess()
		return fmt.Errorf("%w; last lines of %s:\n%s", err, logPath, tail(logPath, 20))
	}
	return nil
}

func (s *Server) waitReady(p *process) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.caPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(readyTimeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("kube-apiserver exited before it was ready: %v", p.err)
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, s.URL()+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := hc.Do(req)
		if err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(b.String()))
		} else {
			last = err.Error()
		}
		select {
		case <-p.exited:
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("kube-apiserver not ready after %s (last /readyz: %s)", readyTimeout, last)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stopProcess ends the running process (SIGTERM, then SIGKILL) and waits.
func (s *Server) stopProcess() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (s *Server) close() {
	s.stopProcess()
	if s.etcd != nil {
		s.etcd.Close()
	}
	os.RemoveAll(s.dir)
}

// URL is the server's address, https://127.0.0.1:<port>.
func (s *Server) URL() string { return "https://127.0.0.1:" + strconv.Itoa(s.port) }

// CAPEM is the CA of the server's certificate (and of UserConfig's client
// certificates).
func (s *Server) CAPEM() []byte { return append([]byte(nil), s.caPEM...) }

// LogPath is the API server's log file (appended across restarts).
func (s *Server) LogPath() string { return filepath.Join(s.dir, "kube-apiserver.log") }

// Config is a client configuration with cluster-admin rights (a bearer
// token in group system:masters). Each call returns a new copy.
func (s *Server) Config() *rest.Config {
	return &rest.Config{
		Host:            s.URL(),
		BearerToken:     s.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.CAPEM()},
		QPS:             200,
		Burst:           400,
		Timeout:         30 * time.Second,
	}
}

// UserConfig is a client configuration authenticating as user in groups
// (a client certificate from the test CA): it may do only what RBAC grants
// it, which is how a test checks a chart's least-privilege roles.
func (s *Server) UserConfig(t testing.TB, user string, groups ...string) *rest.Config {
	t.Helper()
	now := time.Now()
	certPEM, keyPEM, err := s.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Fatalf("kubetest: client certificate for %s: %v", user, err)
	}
	cfg := s.Config()
	cfg.BearerToken = ""
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	return cfg
}

// Kubeconfig writes a kubeconfig file with Config's credentials into a
// test temp dir and returns its path (for programs that take --kubeconfig).
func (s *Server) Kubeconfig(t testing.TB) string {
	t.Helper()
	return WriteKubeconfig(t, s.Config())
}

// WriteKubeconfig writes cfg (bearer token or client certificate, CA data)
// as a kubeconfig file in a test temp dir and returns its path.
func WriteKubeconfig(t testing.TB, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["kubetest"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken, ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "kubetest"}
	kc.CurrentContext = "kubetest"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, p); err != nil {
		t.Fatalf("kubetest: write kubeconfig: %v", err)
	}
	return p
}

var nsUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace named after the test (unique in the
// server) and returns its name. It is not deleted: without a
// controller-manager a deleted namespace never finishes terminating.
func (s *Server) Namespace(t testing.TB) string {
	t.Helper()
	base := strings.Trim(nsUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	name := fmt.Sprintf("%s-%d", base, s.nsSeq.Add(1))
	cs, err := kubernetes.NewForConfig(s.Config())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("kubetest: create namespace %s: %v", name, err)
	}
	return name
}

// Stop stops the API server (its etcd keeps running, so its data stays),
// for tests of what a client does while it is down. Restart starts it
// again on the same port; if the test ends first, its cleanup does, so the
// next test finds a running server. Only one test at a time may stop it.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.stopMu.Lock()
	s.stopProcess()
	t.Cleanup(func() {
		s.mu.Lock()
		down := s.proc == nil
		s.mu.Unlock()
		if down {
			if err := s.run(); err != nil {
				t.Errorf("kubetest: restart after the test: %v", err)
			}
			s.stopMu.Unlock()
		}
	})
}

// Restart starts a server stopped by Stop again, on the same port and
// data, and waits until it is ready; on a running server it stops it
// first.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		s.stopMu.Lock()
		s.stopProcess()
	}
	err := s.run()
	s.stopMu.Unlock()
	if err != nil {
		t.Fatalf("kubetest: restart: %v", err)
	}
}
