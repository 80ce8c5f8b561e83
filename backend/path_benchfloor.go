//go:build benchfloor

package backend

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// This file exists only in the bench's build of the plugin (-tags benchfloor,
// see scripts/bench/floorplugin): it is never part of the product's API. Its
// one path measures what Vault itself costs per write to an external plugin —
// the HTTP layer, the existence-check RPC, the request RPC and one storage put
// over gRPC — so `make bench` can tell the plugin's own cost from Vault's.

// BenchFloorFactory is Factory plus the bench/floor/<name> path.
func BenchFloorFactory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := New(NewTransitSealer)
	b.Backend.Paths = append(b.Backend.Paths, pathBenchFloor()...)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

func pathBenchFloor() []*framework.Path {
	return []*framework.Path{{
		Pattern: "bench/floor/" + framework.GenericNameRegex("name"),
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Any name: each write stores one small entry under it."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
				return nil, req.Storage.Put(ctx, &logical.StorageEntry{Key: "bench-floor/" + d.Get("name").(string), Value: []byte("{}")})
			}},
		},
		HelpSynopsis:    "Bench-only: one storage put per write (the external-plugin floor).",
		HelpDescription: "Present only in builds with -tags benchfloor, which only `make bench` makes.",
	}}
}
