# heap-owners.py PROFILE N: per-proxy live heap of an xds-server heap profile by owner.
# Runs `go tool pprof -sample_index=inuse_space -traces PROFILE` and gives each sample to the
# first rule (below) that matches any of its frames, innermost first. Sampled (512 KB): ±0.5-1 KB per row.
import re,sys,subprocess,collections
prof=sys.argv[1]; n=int(sys.argv[2])
t=subprocess.run(['go','tool','pprof','-sample_index=inuse_space','-traces',prof],capture_output=True,text=True).stdout
blocks=t.split('-----------+-------------------------------------------------------')[1:]
def size(s):
    m=re.match(r'([\d.]+)(kB|MB|B|GB)?$',s)
    v=float(m.group(1)); u=m.group(2) or 'B'
    return v*{'B':1,'kB':1024,'MB':1024*1024,'GB':1024**3}[u]
# categories: first matching rule scanning frames from leaf to root
rules=[
 ('gRPC write buffers (pooled, transient)', r'mem\.\(\*SimpleBufferPool\)'),
 ('TLS connection state (handshake buffers, AES-GCM)', r'^crypto/tls\.'),
 ('go-control-plane SnapshotCache (per-node snapshot, watches)', r'go-control-plane/pkg/cache/v3'),
 ('ads Callbacks + insight per stream', r'xds-server/internal/(ads\.\(\*Callbacks\)|insight)'),
 ('reconcile: per-proxy snapshot (wire/hollow, cache snapshot) + generation', r'xds-server/internal/(reconcile|generator)'),
 ('go-control-plane sotw stream state + received requests', r'go-control-plane/pkg/server'),
 ('auth stream state (token, identity)', r'xds-server/internal/ads|StreamAuth|streamAuth'),
 ('gRPC HTTP/2 transport (framer, hpack, loopy, keepalive)', r'grpc/internal/transport|golang.org/x/net/http2'),
 ('gRPC server stream / handler', r'^google.golang.org/grpc\.'),
 ('goroutine descriptors (runtime.malg)', r'runtime\.malg'),
]
agg=collections.Counter(); tot=0
for b in blocks:
    lines=[l for l in b.split('\n') if l.strip()]
    if not lines: continue
    lines=[l for l in lines if not l.strip().startswith('bytes:')]
    m=re.match(r'\s*([\d.]+(?:kB|MB|GB|B)?)\s+(\S+)',lines[0])
    if not m:
        print('skip',lines[0]); continue
    sz=size(m.group(1)); frames=[m.group(2)]+[l.strip().split()[0] for l in lines[1:]]
    tot+=sz
    key='other (shared mesh snapshot, store, process)'
    done=False
    for name,rx in rules:
        for f in frames:
            if re.search(rx,f):
                key=name;done=True;break
        if done: break
    agg[key]+=sz
print('total %.1f MB = %.1f KB per proxy (N=%d)'%(tot/2**20,tot/1024/n,n))
for k,v in agg.most_common():
    print('%7.1f MB %6.1f KB/proxy  %s'%(v/2**20,v/1024/n,k))
