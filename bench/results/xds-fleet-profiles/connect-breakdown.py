# connect-breakdown.py FILE.pprof... : where an xds-server connect-window CPU
# profile (-xds-connect-cpuprofile) goes. Runs `go tool pprof -traces` and
# gives each sample to the first matching rule (order matters: the TLS
# handshake before the HTTP/2 set-up that calls it, and so on); stack growth
# is counted across them all. Used for bench/RESULTS.md, 2026-11-30 night.
import re,sys,subprocess,collections
def load(path):
    txt=subprocess.run(['go','tool','pprof','-traces',path],capture_output=True,text=True,check=True).stdout
    out=[]
    for b in txt.split('-----------+-------------------------------------------------------'):
        lines=[l for l in b.strip('\n').split('\n') if l.strip()]
        if not lines or not re.match(r'\s*[\d.]+(ms|s)\s',lines[0]): continue
        m=re.match(r'\s*([\d.]+)(ms|s)',lines[0]); v=float(m.group(1))*(1 if m.group(2)=='ms' else 1000)
        frames=[lines[0].split()[-1]]+[l.strip() for l in lines[1:]]
        out.append((v,frames))
    return out
rules=[
 ('TLS handshake: key exchange (X25519MLKEM768)','hybridKeyExchange'),
 ('TLS handshake: certificate signature (ECDSA P-256)','sendServerCertificate'),
 ('TLS handshake: rest','tlsCreds).ServerHandshake'),
 ('writing responses (loopy: HTTP/2, TLS encrypt, write)','loopyWriter'),
 ('HTTP/2 transport set-up','NewServerTransport'),
 ('stream auth: dataplane token (JWT ES256) verify','VerifyDataplane'),
 ('first generation (reconcile: Generate, Wire, SetSnapshot)','Reconciler).reconcile'),
 ('insight (DataplaneInsight to etcd)','insight.'),
 ('go-control-plane debug lines formatted (cacheLogger)','cacheLogger'),
 ('go-control-plane stream loop (watches, callbacks incl. reconcile.Connect)','sotw/v3.(*server).process'),
 ('receive + unmarshal requests','RecvMsg'),
 ('reading frames (TLS decrypt, HTTP/2)','HandleStreams'),
 ('accept','Accept'),
 ('GC (background mark)','gcBgMarkWorker'),
]
for path in sys.argv[1:]:
    tr=load(path); tot=sum(v for v,_ in tr)
    c=collections.Counter(); stack=0
    for v,fr in tr:
        if 'runtime.newstack' in fr: stack+=v
        for name,pat in rules:
            if any(pat in f for f in fr):
                c[name]+=v; break
        else: c['other (scheduler, netpoll, timers, ...)']+=v
    print(f"## {path}: {tot/1000:.2f} s of samples")
    for name,_ in rules+[('other (scheduler, netpoll, timers, ...)',None)]:
        print(f"| {name} | {c[name]/1000:.2f} s | {c[name]/tot*100:.1f}% |")
    print(f"| (across the above) goroutine stack growth | {stack/1000:.2f} s | {stack/tot*100:.1f}% |")
