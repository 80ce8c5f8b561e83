package backend

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/mitchellh/mapstructure"
	"golang.org/x/sync/errgroup"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// defaultUsageWorkers bounds the keys of one usage report merged at once.
const defaultUsageWorkers = 8

var usageLocks = locksutil.CreateLocks()

func pathUsage(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "usage",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "report", OperationSuffix: "usage"},
		Fields: map[string]*framework.FieldSchema{
			"usage": {Type: framework.TypeSlice, Required: true, Description: `Batch from a verifier: [{"key_id", "count", "last_used_at" (RFC 3339), "last_used_from" (IP)}…], up to 1000.`},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathUsageWrite},
		},
		HelpSynopsis:    "Record batched key usage reported by verifiers.",
		HelpDescription: "Usage is stored apart from key records and is not a mutation: it produces no change-feed entries. read and list show use_count, last_used_at and last_used_from.",
	}}
}

type usageInput struct {
	KeyID        string `mapstructure:"key_id"`
	Count        uint64 `mapstructure:"count"`
	LastUsedAt   string `mapstructure:"last_used_at"`
	LastUsedFrom string `mapstructure:"last_used_from"`
}

func (b *Backend) pathUsageWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	raw := d.Get("usage").([]interface{})
	if len(raw) > wire.MaxUsageBatch {
		return badRequest(fmt.Errorf("usage batch has %d entries; send at most %d per request", len(raw), wire.MaxUsageBatch))
	}
	batch := make([]wire.Usage, 0, len(raw))
	for i, item := range raw {
		var in usageInput
		dec, _ := mapstructure.NewDecoder(&mapstructure.DecoderConfig{Result: &in, WeaklyTypedInput: true, ErrorUnused: true})
		if err := dec.Decode(item); err != nil {
			// The decoder's message may quote the value (a pasted key): say what is expected instead.
			return badRequest(fmt.Errorf(`usage[%d] is malformed: each entry is {"key_id": string, "count": number, "last_used_at": RFC 3339 time, "last_used_from": IP}`, i))
		}
		u, err := in.validate()
		if err != nil {
			return badRequest(fmt.Errorf("usage[%d]: %w", i, err))
		}
		batch = append(batch, u)
	}
	// Keys are merged a few at a time: each merge is a storage round trip or
	// two, and Vault spends less per round trip when some overlap than when
	// they come one after another. A key's merges are ordered by its lock.
	var recorded atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.usageWorkers)
	for _, u := range batch {
		g.Go(func() error {
			ok, err := b.addUsage(gctx, req.Storage, u)
			if ok {
				recorded.Add(1)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	n := int(recorded.Load())
	return &logical.Response{Data: map[string]interface{}{"recorded": n, "ignored": len(batch) - n}}, nil
}

func (in usageInput) validate() (wire.Usage, error) {
	u := wire.Usage{KeyID: in.KeyID, Count: in.Count, LastUsedFrom: in.LastUsedFrom}
	if !token.ValidKeyID(in.KeyID) {
		return u, keyIDError("key_id", in.KeyID)
	}
	t, err := time.Parse(time.RFC3339Nano, in.LastUsedAt)
	if err != nil {
		return u, fmt.Errorf("last_used_at %q is not an RFC 3339 time", printable(in.LastUsedAt))
	}
	u.LastUsedAt = t.UTC()
	if in.LastUsedFrom != "" {
		if _, err := netip.ParseAddr(in.LastUsedFrom); err != nil {
			return u, fmt.Errorf("last_used_from %q is not an IP address", printable(in.LastUsedFrom))
		}
	}
	return u, nil
}

// addUsage merges one report into usage/<key_id>; unknown key_ids are ignored.
func (b *Backend) addUsage(ctx context.Context, s logical.Storage, u wire.Usage) (bool, error) {
	lock := locksutil.LockForKey(usageLocks, u.KeyID)
	lock.Lock()
	defer lock.Unlock()
	cur, err := b.getUsage(ctx, s, u.KeyID)
	if err != nil {
		return false, err
	}
	if cur == nil {
		rec, err := b.getRecord(ctx, s, u.KeyID)
		if err != nil || rec == nil {
			return false, err
		}
		cur = &wire.Usage{KeyID: u.KeyID}
	}
	cur.Count += u.Count
	if u.LastUsedAt.After(cur.LastUsedAt) {
		cur.LastUsedAt, cur.LastUsedFrom = u.LastUsedAt, u.LastUsedFrom
	}
	return true, writeThrough(ctx, s, b.usage, u.KeyID, storageUsage+u.KeyID, cur)
}

// getUsage returns a key's use counts (nil when it has none), read through the
// usage cache; the caller owns the copy it gets.
func (b *Backend) getUsage(ctx context.Context, s logical.Storage, keyID string) (*wire.Usage, error) {
	u, err := readThrough(ctx, s, b.usage, keyID, storageUsage+keyID)
	if u == nil || err != nil {
		return nil, err
	}
	copied := *u
	return &copied, nil
}
