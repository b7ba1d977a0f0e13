package store

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	storev1 "github.com/weftmesh/weft/proto/gen/go/weft/store/v1"
)

// ResealResult counts what Reseal did.
type ResealResult struct {
	// Resealed values now sealed with the active key.
	Resealed int
	// Current values were already sealed with the active key.
	Current int
	// Failed names (type/mesh/name) values that could not be opened (sealed
	// with a key that is not in the keyring, or corrupt): they are left as
	// they are.
	Failed []string
}

// Reseal re-seals every sealed value (Secrets, GlobalSecrets including the
// control plane's cp-* secrets, builtin CA roots, which are Secrets) with
// the keyring's active key, so older keys can be dropped. Each value is
// rewritten only while it is unchanged since it was read (a concurrent
// write wins and is re-read), its metadata and lease are kept, and values
// already sealed with the active key are not touched. It is safe to run
// again, and while services run (they must already have the new key in
// their keyring, to read what Reseal writes).
func (s *Store) Reseal(ctx context.Context) (ResealResult, error) {
	var res ResealResult
	if s.keys == nil {
		return res, errors.New("reseal: no encryption key configured")
	}
	active := s.keys.ActiveKeyID()
	for _, t := range resource.Types() {
		if !t.Sensitive {
			continue
		}
		prefix := s.TypePrefix(t, "")
		start := prefix
		end := clientv3.GetPrefixRangeEnd(prefix)
		for {
			pctx, cancel := context.WithTimeout(ctx, s.timeout)
			resp, err := s.cli.Get(pctx, start, clientv3.WithRange(end), clientv3.WithLimit(MaxPageSize))
			cancel()
			if err != nil {
				return res, classify(ctx, err, "reseal: list "+t.Name, false)
			}
			for _, kv := range resp.Kvs {
				if err := s.resealOne(ctx, string(kv.Key), kv.Value, kv.ModRevision, active, &res); err != nil {
					return res, err
				}
			}
			if !resp.More || len(resp.Kvs) == 0 {
				break
			}
			start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}
	return res, nil
}

// resealOne re-seals one value, retrying when it changed under us.
func (s *Store) resealOne(ctx context.Context, key string, value []byte, modRev int64, active string, res *ResealResult) error {
	for attempt := 0; ; attempt++ {
		sr := &storev1.StoredResource{}
		if err := proto.Unmarshal(value, sr); err != nil || sr.GetSealed() == nil {
			res.Failed = append(res.Failed, s.displayKey(key))
			s.log.Error("reseal: value is not a sealed record, left as is", "key", s.displayKey(key))
			return nil
		}
		if sr.GetSealed().GetKeyId() == active {
			res.Current++
			return nil
		}
		plain, err := s.keys.Open(sr.GetSealed(), []byte(key))
		if err != nil {
			res.Failed = append(res.Failed, s.displayKey(key))
			s.log.Error("reseal: cannot open value, left as is", "key", s.displayKey(key), "error", err)
			return nil
		}
		if sr.Sealed, err = s.keys.Seal(plain, []byte(key)); err != nil {
			return err
		}
		out, err := proto.Marshal(sr)
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, s.timeout)
		txn, err := s.cli.Txn(wctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
			Then(clientv3.OpPut(key, string(out), clientv3.WithIgnoreLease())).
			Else(clientv3.OpGet(key)).Commit()
		cancel()
		if err != nil {
			return classify(ctx, err, "reseal "+s.displayKey(key), true)
		}
		if txn.Succeeded {
			res.Resealed++
			return nil
		}
		kvs := txn.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			return nil // deleted meanwhile: nothing to re-seal
		}
		if attempt >= 10 {
			return fmt.Errorf("reseal %s: it keeps changing; run reseal again", s.displayKey(key))
		}
		value, modRev = kvs[0].Value, kvs[0].ModRevision
	}
}

// BadValue is a stored value that cannot be decoded.
type BadValue struct {
	Type     *resource.Type
	Mesh     string
	Name     string
	Revision int64
	// Reason says why (never the value).
	Reason string
}

// Key names the value as type/mesh/name.
func (b BadValue) Key() string { return resource.Key(b.Type.Name, b.Mesh, b.Name) }

// Undecodable scans every resource type and returns the values that cannot
// be decoded (sealed with a key that is not configured, tampered, corrupt).
// Remove one with Delete(b.Type, b.Mesh, b.Name, b.Revision).
func (s *Store) Undecodable(ctx context.Context) ([]BadValue, error) {
	var out []BadValue
	for _, t := range resource.Types() {
		prefix := s.TypePrefix(t, "")
		start, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
		for {
			pctx, cancel := context.WithTimeout(ctx, s.timeout)
			resp, err := s.cli.Get(pctx, start, clientv3.WithRange(end), clientv3.WithLimit(MaxPageSize))
			cancel()
			if err != nil {
				return out, classify(ctx, err, "scan "+t.Name, false)
			}
			for _, kv := range resp.Kvs {
				if _, err := s.decode(string(kv.Key), kv.Value, kv.ModRevision); err != nil {
					typ, mesh, name, perr := s.ParseKey(string(kv.Key))
					if perr != nil {
						continue
					}
					reason := err.Error()
					var se *Error
					if errors.As(err, &se) {
						reason = se.Reason
					}
					out = append(out, BadValue{Type: typ, Mesh: mesh, Name: name, Revision: kv.ModRevision, Reason: reason})
				}
			}
			if !resp.More || len(resp.Kvs) == 0 {
				break
			}
			start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}
	return out, nil
}

// DeleteUndecodable removes one value that cannot be decoded, and only that
// key (deleting an unreadable Mesh this way does not cascade to the mesh's
// resources), while it is still at revision (0: any revision). It fails
// with ErrConflict when the value is now readable or changed, ErrNotFound
// when it is gone.
func (s *Store) DeleteUndecodable(ctx context.Context, t *resource.Type, mesh, name string, revision int64) (err error) {
	ctx, end := s.span(ctx, "DeleteUndecodable", t, mesh, name)
	defer end(&err)
	if !t.MeshScoped() {
		mesh = ""
	}
	key := s.Key(t, mesh, name)
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return classify(parentCtx(ctx), err, resource.Key(t.Name, mesh, name), false)
	}
	if len(resp.Kvs) == 0 {
		return &Error{Err: ErrNotFound, Key: resource.Key(t.Name, mesh, name)}
	}
	kv := resp.Kvs[0]
	if _, derr := s.decode(key, kv.Value, kv.ModRevision); derr == nil || (revision != 0 && revision != kv.ModRevision) {
		return &Error{Err: ErrConflict, Key: resource.Key(t.Name, mesh, name)}
	}
	txn, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return classify(parentCtx(ctx), err, resource.Key(t.Name, mesh, name), true)
	}
	if !txn.Succeeded {
		return &Error{Err: ErrConflict, Key: resource.Key(t.Name, mesh, name)}
	}
	s.log.Warn("deleted an undecodable value", "key", resource.Key(t.Name, mesh, name), "revision", kv.ModRevision)
	return nil
}
