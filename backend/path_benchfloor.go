//go:build benchfloor

package backend

import (
	"bytes"
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// This file exists only in the bench's build of the plugin (-tags benchfloor,
// see scripts/bench/floorplugin): it is never part of the product's API. Its
// paths measure what Vault itself costs per write to an external plugin, so
// `make bench` can tell the plugin's own cost from Vault's:
//
//   - bench/floor/<name>: the HTTP layer, the existence-check RPC, the request
//     RPC and one storage put over gRPC.
//   - bench/contract/<name>: the least storage traffic any create can have
//     while a change reaches the feed only after its record is written
//     (publish.go), with no other work: a record and a name entry written
//     side by side, then a feed entry (only after the record), then the
//     event. It keeps nothing else durable (no publish mark), so it is a
//     bound no real create reaches, not a design.

// Sizes, about, of what a create writes (a bench key: no metadata, no expiry), so the
// contract path moves as many bytes through Vault's barrier as a create does.
const (
	benchRecordBytes = 470
	benchNameBytes   = 190
	benchFeedBytes   = 150
)

// BenchFloorFactory is Factory plus the bench/floor and bench/contract paths.
func BenchFloorFactory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := New(NewTransitSealer)
	b.Backend.Paths = append(b.Backend.Paths, pathBenchFloor(b)...)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

func pathBenchFloor(b *Backend) []*framework.Path {
	nameField := map[string]*framework.FieldSchema{
		"name": {Type: framework.TypeString, Description: "Any name: each write stores its entries under it."},
	}
	write := func(cb framework.OperationFunc) map[logical.Operation]framework.OperationHandler {
		return map[logical.Operation]framework.OperationHandler{logical.UpdateOperation: &framework.PathOperation{Callback: cb}}
	}
	return []*framework.Path{{
		Pattern: "bench/floor/" + framework.GenericNameRegex("name"),
		Fields:  nameField,
		Operations: write(func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
			return nil, req.Storage.Put(ctx, &logical.StorageEntry{Key: "bench-floor/" + d.Get("name").(string), Value: []byte("{}")})
		}),
		HelpSynopsis:    "Bench-only: one storage put per write (the external-plugin floor).",
		HelpDescription: "Present only in builds with -tags benchfloor, which only `make bench` makes.",
	}, {
		Pattern:         "bench/contract/" + framework.GenericNameRegex("name"),
		Fields:          nameField,
		Operations:      write(b.benchContractWrite),
		HelpSynopsis:    "Bench-only: the least storage traffic of a create under the design (record ‖ name, feed entry, event).",
		HelpDescription: "Present only in builds with -tags benchfloor, which only `make bench` makes.",
	}}
}

// benchContractWrite does a create's unavoidable storage traffic and nothing else.
func (b *Backend) benchContractWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	put := func(key string, n int) error {
		return req.Storage.Put(ctx, &logical.StorageEntry{Key: "bench-contract/" + key + "/" + name, Value: bytes.Repeat([]byte{'x'}, n)})
	}
	nameDone := make(chan error, 1)
	go func() { nameDone <- put("name", benchNameBytes) }()
	err := put("record", benchRecordBytes)
	if nerr := <-nameDone; err == nil {
		err = nerr
	}
	if err == nil {
		err = put("feed", benchFeedBytes)
	}
	if err != nil {
		return nil, err
	}
	b.sendEvent(ctx, "bench-contract", "name", name)
	return nil, nil
}
