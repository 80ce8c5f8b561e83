package backend

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func pathChanges(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "changes",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "changes"},
		Fields: map[string]*framework.FieldSchema{
			"after":        {Type: framework.TypeString, Default: "0", Query: true, Description: "Return changes with seq greater than this (the last seq the follower applied)."},
			"after_id":     {Type: framework.TypeString, Query: true, Description: "id of the entry at after, as this feed answered it. When the entry at after is not that one (the mount was recreated or its storage restored), the answer is reset=true. Empty skips the check."},
			"wait":         {Type: framework.TypeString, Default: "0s", Query: true, Description: "Long-poll: when nothing is newer than after, wait up to this long (e.g. 2s; at most 5s)."},
			"hold_created": {Type: framework.TypeString, Default: "0s", Query: true, Description: "With wait: when every change newer than after announces a new key (op created), hold the answer up to this long (at most 100ms, never past wait) so that later ones come with it. Any other change ends the hold at once. A new key is in no cache, so a verifier loses nothing and polls far less under an issuance load."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.pathChangesRead},
		},
		HelpSynopsis:    pathChangesHelpSyn,
		HelpDescription: pathChangesHelpDesc,
	}}
}

func (b *Backend) pathChangesRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	rawAfter := d.Get("after").(string)
	if rawAfter == "" {
		rawAfter = "0"
	}
	after, err := strconv.ParseUint(rawAfter, 10, 64)
	if err != nil {
		return badRequest(fmt.Errorf("after must be a sequence number (0 or more)"))
	}
	afterID := d.Get("after_id").(string)
	if len(afterID) > 64 {
		return badRequest(fmt.Errorf("after_id must be the id of a feed entry (16 hex characters); got %d characters", len(afterID)))
	}
	wait, err := parseWait(d.Get("wait").(string))
	if err != nil {
		return badRequest(err)
	}
	hold, err := parseDuration("hold_created", d.Get("hold_created").(string), wire.MaxHoldCreated)
	if err != nil {
		return badRequest(err)
	}
	deadline := time.Now().Add(wait)
	out, err := b.feed.Since(ctx, req.Storage, after, afterID)
	if err != nil {
		return nil, err
	}
	if len(out.Changes) == 0 && !out.Reset && wait > 0 {
		b.feed.Wait(ctx, after, wait)
		if out, err = b.feed.Since(ctx, req.Storage, after, afterID); err != nil {
			return nil, err
		}
	}
	if hold = min(hold, time.Until(deadline)); len(out.Changes) > 0 && !out.Reset && b.feed.HoldCreated(ctx, after, hold) {
		if out, err = b.feed.Since(ctx, req.Storage, after, afterID); err != nil {
			return nil, err
		}
	}
	return &logical.Response{Data: responseData(out)}, nil
}

// parseWait accepts a Go duration or whole seconds, capped at wire.MaxWait.
func parseWait(s string) (time.Duration, error) { return parseDuration("wait", s, wire.MaxWait) }

// parseDuration reads the field `name` as a Go duration or whole seconds,
// capped at most.
func parseDuration(name, s string, most time.Duration) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		secs, err2 := strconv.Atoi(s)
		if err2 != nil {
			return 0, fmt.Errorf("%s %q is not a duration such as 2s or 20ms", name, printable(s))
		}
		d = time.Duration(secs) * time.Second
	}
	if d < 0 {
		return 0, fmt.Errorf("%s must not be negative", name)
	}
	return min(d, most), nil
}

const pathChangesHelpSyn = `Follow the change feed: every mutation in order, with long-poll.`

const pathChangesHelpDesc = `
Returns {"changes": [{seq, id, key_id, role, op, time}…], "head": N, "reset": bool}.
Each entry is published only after its record was written. Followers pass the
last seq they applied as after and its id as after_id, and wait (≤ 5s) to
long-poll; with hold_created (≤ 100ms) a page of new keys only is held that
long for later ones, and any other change ends the hold. reset=true means the follower cannot go on from after: it fell behind
feed_retention, is beyond the head, the entry at after is not after_id (mount
recreated, storage restored), or entries were purged while it read. Drop every
cached answer and go on from head.
`
