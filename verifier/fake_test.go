package verifier

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// fakeVault is an in-process stand-in for the plugin's verifier paths (lookup,
// changes, usage) and transit decrypt, speaking Vault's HTTP API. It follows the
// plugin's rules: a mutation updates the record, then appends to the feed;
// lookup reads the head before the records.
type fakeVault struct {
	t       testing.TB
	srv     *httptest.Server
	token   string
	mountID string
	dek     []byte
	wrapped string

	mu      sync.Mutex
	entries map[string]*wire.Entry
	roles   map[string]fakeRole
	tenants map[string][]string // tenant-wide allowed_cidrs
	changes []wire.Change
	head    uint64
	purged  uint64 // changes up to here are gone: older cursors get reset
	wake    chan struct{}
	down    bool

	lookups  [][]string
	decrypts int
	polls    int    // changes reads answered
	afterID  string // after_id of the last changes read
	usage    [][]wire.Usage
	// feedGate, when set, holds every changes read at its start until a value
	// is received from it (or it is closed): the verifier's poll loop is paused.
	feedGate chan struct{}
	gated    int // changes reads that have reached the gate
	// ignorePartialCode makes decrypt ignore partial_failure_response_code,
	// as a Vault older than 1.14 would.
	ignorePartialCode bool
	// lookupHook runs after a lookup has read the head and the records and
	// before it answers: tests block here to force races.
	lookupHook func(ids []string)
	// past, when set, is what every lookup answers instead: records as a
	// lookup read before a change would have found them, at that head.
	past *wire.Batch
}

type fakeRole struct {
	perms      []string
	workspaces []string
	cidrs      []string
}

func newFakeVault(t testing.TB) *fakeVault {
	f := &fakeVault{
		t: t, token: "test-token", mountID: "mount-1234",
		entries: make(map[string]*wire.Entry), roles: make(map[string]fakeRole), tenants: make(map[string][]string),
		wake: make(chan struct{}),
	}
	f.dek = make([]byte, envelope.DEKSize)
	_, _ = rand.Read(f.dek)
	f.wrapped = "vault:v1:" + base64.StdEncoding.EncodeToString(f.dek)
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/apikeys/lookup", f.serveLookup)
	mux.HandleFunc("GET /v1/apikeys/lookup", f.serveLookup)
	mux.HandleFunc("GET /v1/apikeys/changes", f.serveChanges)
	mux.HandleFunc("PUT /v1/apikeys/usage", f.serveUsage)
	mux.HandleFunc("PUT /v1/transit/decrypt/apikeys", f.serveDecrypt)
	mux.HandleFunc("GET /v1/auth/token/lookup-self", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, map[string]any{"ttl": 0, "renewable": false})
	})
	f.srv = httptest.NewServer(f.gate(mux))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeVault) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		down, tok := f.down, f.token
		f.mu.Unlock()
		if down {
			http.Error(w, `{"errors":["Vault is sealed"]}`, http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("X-Vault-Token") != tok {
			http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func reply(w http.ResponseWriter, data any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

// setDown makes every request fail (503) until setDown(false); parked polls fail at once.
func (f *fakeVault) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *fakeVault) role(name string, perms, workspaces, cidrs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roles[name] = fakeRole{perms: perms, workspaces: workspaces, cidrs: cidrs}
}

type keyOpts struct {
	tenant      string // "" = an entry naming no tenant (an engine before tenants)
	creatorRole string // the platform role of the key's creator ("" = no ceiling)
	workspace   string
	cidrs       []string
	expires     *time.Time
	metadata    map[string]string
}

// issue creates a key of role and returns its token and key_id.
func (f *fakeVault) issue(name, role string, o keyOpts) (string, string) {
	f.t.Helper()
	tok, err := token.Generate(token.DefaultPrefix)
	require.NoError(f.t, err)
	f.issueAs(tok, name, role, o)
	return tok.String(), tok.KeyID
}

// issueAs creates a key with a given token (to create a key_id a verifier has
// already been asked about).
func (f *fakeVault) issueAs(tok token.Token, name, role string, o keyOpts) {
	f.t.Helper()
	d := tok.Digest()
	sealed, err := envelope.Seal(f.dek, f.wrapped, envelope.AAD(f.mountID, tok.KeyID), d[:])
	require.NoError(f.t, err)
	f.mu.Lock()
	r := f.roles[role]
	perms := r.perms
	if o.creatorRole != "" { // the creator ceiling: never more than the creator's role
		perms = wire.Intersect(perms, f.roles[o.creatorRole].perms)
	}
	f.entries[tok.KeyID] = &wire.Entry{
		KeyID: tok.KeyID, Status: wire.StatusActive, Name: name, Tenant: o.tenant, Role: role, Workspace: o.workspace,
		Permissions: perms, AllowedWorkspaces: r.workspaces, AllowedCIDRs: o.cidrs, RoleAllowedCIDRs: r.cidrs,
		TenantAllowedCIDRs: f.tenants[o.tenant], CreatorRole: o.creatorRole,
		ExpiresAt: o.expires, Metadata: o.metadata, MountID: f.mountID, Sealed: &sealed,
	}
	f.publish(wire.Change{KeyID: tok.KeyID, Tenant: o.tenant, Role: role, Op: wire.OpCreated})
	f.mu.Unlock()
}

// setStatus changes a key's status (revoke keeps the sealed digest, like a tombstone).
func (f *fakeVault) setStatus(keyID, status, op string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entries[keyID]
	require.NotNil(f.t, e)
	e.Status = status
	return f.publish(wire.Change{KeyID: keyID, Role: e.Role, Op: op})
}

// downgrade sets a role's permissions and caps every key of it, and every key
// whose creator holds it (the creator ceiling), in one feed entry.
func (f *fakeVault) downgrade(role string, perms []string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.roles[role]
	r.perms = perms
	f.roles[role] = r
	for _, e := range f.entries {
		if e.Role == role {
			e.Permissions = perms
		}
		if e.CreatorRole == role {
			e.Permissions = wire.Intersect(e.Permissions, perms)
		}
	}
	return f.publish(wire.Change{Role: role, Op: wire.OpRoleUpdated})
}

// setTenantCIDRs sets a tenant's allowed_cidrs on every key of it: one feed
// entry naming the tenant and no key, as the plugin publishes it.
func (f *fakeVault) setTenantCIDRs(tenant string, cidrs []string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tenants[tenant] = cidrs
	return f.tenantChange(wire.Change{Tenant: tenant, Op: wire.OpTenantUpdated}, func(e *wire.Entry) { e.TenantAllowedCIDRs = cidrs })
}

// setAllowlist sets the CIDRs every key of tenant takes from its allow-list
// name (the fake keeps them as the keys' own list): one feed entry naming the
// tenant and the list, no key.
func (f *fakeVault) setAllowlist(tenant, name string, cidrs []string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tenantChange(wire.Change{Tenant: tenant, Allowlist: name, Op: wire.OpAllowlistUpdated}, func(e *wire.Entry) { e.AllowedCIDRs = cidrs })
}

// tenantChange applies edit to every key of c.Tenant and publishes c. Caller holds mu.
func (f *fakeVault) tenantChange(c wire.Change, edit func(*wire.Entry)) uint64 {
	for _, e := range f.entries {
		if e.Tenant == c.Tenant {
			edit(e)
		}
	}
	return f.publish(c)
}

// purge drops the feed's history so that cursors before the head get a reset.
func (f *fakeVault) purge() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.purged = f.head
	f.changes = nil
}

// fakeFeedPage is the most changes one read returns, as the plugin's feedPage.
const fakeFeedPage = 1000

// publish appends a change after the record was written. Caller holds mu.
func (f *fakeVault) publish(c wire.Change) uint64 {
	f.head++
	c.Seq, c.Time, c.ID = f.head, time.Now(), randomID()
	f.changes = append(f.changes, c)
	close(f.wake)
	f.wake = make(chan struct{})
	return f.head
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// holdFeed pauses the verifier's feed: every changes read from now on waits at
// the gate. It returns once a read waits there, so no read is in flight.
func (f *fakeVault) holdFeed() {
	f.mu.Lock()
	f.feedGate = make(chan struct{})
	n := f.gated
	f.mu.Unlock()
	require.Eventually(f.t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.gated > n }, 5*time.Second, time.Millisecond)
}

// stepFeed lets one held read through and waits until the next one is held:
// the verifier has applied exactly that read's answer.
func (f *fakeVault) stepFeed() {
	f.mu.Lock()
	gate, n := f.feedGate, f.gated
	f.mu.Unlock()
	gate <- struct{}{}
	require.Eventually(f.t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.gated > n }, 5*time.Second, time.Millisecond)
}

// releaseFeed ends holdFeed.
func (f *fakeVault) releaseFeed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.feedGate != nil {
		close(f.feedGate)
		f.feedGate = nil
	}
}

// restore replaces the feed's history with another one of the same length, as
// a recreated mount or a storage restore does: every entry gets a new id, and
// the verifier's cursor no longer names an entry of this history.
func (f *fakeVault) restore() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.changes {
		f.changes[i].ID = randomID()
	}
}

// publishNoise appends n changes of a role nothing uses.
func (f *fakeVault) publishNoise(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.publish(wire.Change{Role: "noise", Op: wire.OpRoleUpdated})
	}
}

// lookupIDs are the key_ids of a lookup: comma-separated in the query of a
// read, as Vault hands it to the plugin, or a list in the body of a write.
func lookupIDs(r *http.Request) ([]string, error) {
	if r.Method == http.MethodGet {
		if q := r.URL.Query().Get("key_ids"); q != "" {
			return strings.Split(q, ","), nil
		}
		return nil, nil
	}
	var in struct {
		KeyIDs []string `json:"key_ids"`
	}
	err := json.NewDecoder(r.Body).Decode(&in)
	return in.KeyIDs, err
}

func (f *fakeVault) serveLookup(w http.ResponseWriter, r *http.Request) {
	ids, err := lookupIDs(r)
	if err != nil || len(ids) == 0 || len(ids) > wire.MaxBatch {
		http.Error(w, `{"errors":["bad key_ids"]}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	seq := f.head // before the records, as the plugin does
	out := make([]wire.Entry, len(ids))
	for i, id := range ids {
		if e := f.entries[id]; e != nil {
			out[i] = *e
		} else {
			out[i] = wire.Entry{KeyID: id, Status: wire.StatusNotFound}
		}
		out[i].Seq = seq
	}
	f.lookups = append(f.lookups, ids)
	hook, past := f.lookupHook, f.past
	f.mu.Unlock()
	if hook != nil {
		hook(ids)
	}
	if past != nil {
		reply(w, *past)
		return
	}
	reply(w, wire.Batch{Entries: out, Seq: seq})
}

func (f *fakeVault) serveChanges(w http.ResponseWriter, r *http.Request) {
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	afterID := r.URL.Query().Get("after_id")
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	f.mu.Lock()
	f.gated++
	gate := f.feedGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	deadline := time.NewTimer(min(wait, 5*time.Second))
	defer deadline.Stop()
	for {
		f.mu.Lock()
		if f.down {
			f.mu.Unlock()
			http.Error(w, `{"errors":["Vault is sealed"]}`, http.StatusServiceUnavailable)
			return
		}
		f.polls++
		f.afterID = afterID
		// As the plugin: a reset when after is older than retention, beyond
		// the head, or names an entry this history does not have (DESIGN §4).
		if after < f.purged || after > f.head || (afterID != "" && after > f.purged && f.changes[after-f.purged-1].ID != afterID) {
			head := f.head
			f.mu.Unlock()
			reply(w, wire.Changes{Changes: []wire.Change{}, Head: head, Reset: true})
			return
		}
		out := []wire.Change{}
		for _, c := range f.changes {
			if c.Seq > after && len(out) < fakeFeedPage {
				out = append(out, c)
			}
		}
		head, wake := f.head, f.wake
		f.mu.Unlock()
		if len(out) > 0 || wait == 0 {
			reply(w, wire.Changes{Changes: out, Head: head})
			return
		}
		select {
		case <-wake:
		case <-deadline.C:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeVault) serveUsage(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Usage []wire.Usage `json:"usage"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, `{"errors":["bad usage"]}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.usage = append(f.usage, in.Usage)
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// serveDecrypt answers as transit on Vault 1.19 does (checked against the real
// binary by TestIntegrationFakeDecryptMatchesTransit): when any item of a
// batch fails, the whole answer is 400, still carrying every item's result,
// unless partial_failure_response_code is set and some item succeeded.
func (f *fakeVault) serveDecrypt(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Batch []struct {
			Ciphertext string `json:"ciphertext"`
		} `json:"batch_input"`
		PartialCode int `json:"partial_failure_response_code"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, `{"errors":["bad batch"]}`, http.StatusBadRequest)
		return
	}
	type result struct {
		Plaintext string `json:"plaintext,omitempty"`
		Error     string `json:"error,omitempty"`
	}
	out := make([]result, len(in.Batch))
	failed, succeeded := false, false
	for i, b := range in.Batch {
		p, ok := strings.CutPrefix(b.Ciphertext, "vault:v1:")
		if dek, err := base64.StdEncoding.DecodeString(p); ok && err == nil && len(dek) == envelope.DEKSize {
			out[i].Plaintext = p
			succeeded = true
		} else {
			out[i].Error = "invalid ciphertext: unable to decrypt"
			failed = true
		}
	}
	f.mu.Lock()
	f.decrypts++
	ignore := f.ignorePartialCode
	f.mu.Unlock()
	status := http.StatusOK
	if failed {
		status = http.StatusBadRequest
		if in.PartialCode != 0 && succeeded && !ignore {
			status = in.PartialCode
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"batch_results": out}})
}

func (f *fakeVault) lookupCalls() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.lookups...)
}

func (f *fakeVault) usageWrites() [][]wire.Usage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]wire.Usage(nil), f.usage...)
}

func (f *fakeVault) setLookupHook(h func([]string)) {
	f.mu.Lock()
	f.lookupHook = h
	f.mu.Unlock()
}
