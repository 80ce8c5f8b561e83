package verifier

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-apikeys/vault-apikeys/vaultaddr"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// vaultAPI is the verifier's narrow view of Vault: the plugin's lookup, changes
// and usage paths, and transit decrypt. It fails over between addresses on
// connection errors.
type vaultAPI struct {
	clients      []*api.Client
	ring         *vaultaddr.Ring
	mount        string
	transitMount string
	transitKey   string
	// holdCreated is asked of every long-poll (Config.FeedHoldCreated).
	holdCreated time.Duration
	metrics     *metrics
	// denied is called on a 403, so that the login can replace the token.
	denied func()
	// lookupByWrite is set once a lookup read was refused and the write was
	// not, under one token (lookupBatch); warn says so. tokens counts the
	// tokens set: a new one clears lookupByWrite (its policy may grant the read).
	lookupByWrite atomic.Bool
	tokens        atomic.Uint64
	warn          func(msg string, args ...any)
}

func newVaultAPI(cfg *Config, m *metrics) (*vaultAPI, error) {
	v := &vaultAPI{mount: cfg.Mount, transitMount: cfg.TransitMount, transitKey: cfg.TransitKey, holdCreated: cfg.FeedHoldCreated, metrics: m, denied: func() {}, warn: cfg.Logger.Named("lookup").Warn}
	for _, addr := range cfg.VaultAddrs {
		c := api.DefaultConfig() // honours VAULT_CACERT, VAULT_SKIP_VERIFY, … as Vault's tools do
		if c.Error != nil {
			return nil, fmt.Errorf("vault client configuration: %w", c.Error)
		}
		c.Address = addr
		c.MaxRetries = 0 // callers retry on their own schedule; a miss must not wait seconds
		client, err := api.NewClient(c)
		if err != nil {
			return nil, fmt.Errorf("vault client for %s: %w", addr, err)
		}
		client.ClearToken() // set by the login, never picked up from the environment by accident
		v.clients = append(v.clients, client)
	}
	v.ring = vaultaddr.NewRing(len(v.clients))
	return v, nil
}

// vaultAttempts is how many addresses one call tries: a miss must not wait out
// a timeout per node of a large cluster.
const vaultAttempts = 2

// client is the address currently in use.
func (v *vaultAPI) client() *api.Client { return v.clients[v.ring.Current()] }

func (v *vaultAPI) setToken(t string) {
	for _, c := range v.clients {
		c.SetToken(t)
	}
	v.tokens.Add(1)
	v.lookupByWrite.Store(false)
}

// failover runs fn against the current address and, when no Vault answered
// (a connection error, not a 502/503: any answer is final, so a request is
// never sent twice to a node that may have acted on it), against the next.
func (v *vaultAPI) failover(ctx context.Context, fn func(*api.Client) error) error {
	next := func(err error) bool { return vaultaddr.NoAnswer(err) && ctx.Err() == nil }
	return v.ring.DoWhile(vaultAttempts, next, func(i int) error { return fn(v.clients[i]) })
}

// call is exchange, and reports a 403 so that the login can replace the token.
func (v *vaultAPI) call(ctx context.Context, op, method, path string, query url.Values, body any, out decoder) error {
	err := v.exchange(ctx, op, method, path, query, body, out)
	if vaultaddr.Status(err) == http.StatusForbidden {
		v.denied()
	}
	return err
}

// exchange sends one request with failover and decodes the answer's data
// straight into out (nil: the answer is only drained), without the generic
// map of api.Secret: every miss's lookup and every feed poll go through here.
// It records latency and outcome under op. An answer is final: one that does
// not decode is an error, never a reason to ask the next address.
func (v *vaultAPI) exchange(ctx context.Context, op, method, path string, query url.Values, body any, out decoder) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return err
		}
	}
	var answer []byte
	err := v.failover(ctx, func(c *api.Client) error {
		start := time.Now()
		var err error
		answer, err = send(ctx, c, method, path, query, raw)
		v.metrics.vaultLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
		if err != nil {
			v.metrics.vaultErrors.WithLabelValues(op).Inc()
		}
		return err
	})
	if err != nil || out == nil {
		return err
	}
	if err := out(answer); err != nil {
		v.metrics.vaultErrors.WithLabelValues(op).Inc()
		return err
	}
	return nil
}

// send is one request to one address; it returns the whole answer (a body
// cut short is no answer).
func send(ctx context.Context, c *api.Client, method, path string, query url.Values, body []byte) ([]byte, error) {
	r := c.NewRequest(method, "/v1/"+path)
	r.Params = query
	if body != nil {
		r.BodyBytes = body
	}
	//lint:ignore SA1019 the one api call that sends any method and leaves the body readable: Logical's raw writes cancel their context on return
	resp, err := c.RawRequestWithContext(ctx, r)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, withoutQuery(err)
	}
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return answer, nil
}

// withoutQuery drops the query from the URL the api client puts in its errors:
// a lookup's holds up to 100 key_ids, which every waiting miss would log.
func withoutQuery(err error) error {
	strip := func(u string) string {
		if i := strings.IndexByte(u, '?'); i >= 0 {
			return u[:i]
		}
		return u
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		re.URL = strip(re.URL)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = strip(ue.URL)
	}
	return err
}

// decoder decodes the data of an answer; into makes one for out.
type decoder func(answer []byte) error

func into[T any](out *T) decoder {
	return func(answer []byte) error { return decodeData(answer, out) }
}

// decodeData decodes the data of a Vault answer into out in one pass: the
// envelope is typed, so the data is not first copied out and then validated
// and decoded again (that was 40% of decoding a lookup answer, which every
// miss waits for). A missing or null data is an error.
func decodeData[T any](answer []byte, out *T) error {
	var envelope struct {
		Data *T `json:"data"`
	}
	if err := json.Unmarshal(answer, &envelope); err != nil {
		var wrongType *json.UnmarshalTypeError
		if errors.As(err, &wrongType) && wrongType.Field != "" { // inside data; "" is an answer that is no object
			return fmt.Errorf("decode response data: %w", err)
		}
		return fmt.Errorf("decode response: %w", err)
	}
	if envelope.Data == nil {
		return errors.New("response has no data")
	}
	*out = *envelope.Data
	return nil
}

// write sends body to path and decodes the answer's data into out.
func (v *vaultAPI) write(ctx context.Context, op, path string, body any, out decoder) error {
	return v.call(ctx, op, http.MethodPut, path, nil, body, out)
}

// Lookup reads up to wire.MaxBatch keys in one `lookup` request. The answer
// has one entry per id, in order.
func (v *vaultAPI) Lookup(ctx context.Context, ids []string) (wire.Batch, error) {
	var b wire.Batch
	if err := v.lookupBatch(ctx, ids, &b); err != nil {
		return b, fmt.Errorf("lookup %d key ids: %w", len(ids), err)
	}
	if len(b.Entries) != len(ids) {
		return b, fmt.Errorf("lookup of %d key ids returned %d entries", len(ids), len(b.Entries))
	}
	for i := range b.Entries {
		if b.Entries[i].KeyID == "" {
			// ids are substrings of presented tokens: a cached copy must not
			// keep a token alive in memory.
			b.Entries[i].KeyID = strings.Clone(ids[i])
		}
		if b.Entries[i].KeyID != ids[i] {
			return b, fmt.Errorf("lookup answered key %s in place of %s", b.Entries[i].KeyID, ids[i])
		}
		if b.Entries[i].Seq == 0 {
			b.Entries[i].Seq = b.Seq
		}
	}
	return b, nil
}

// lookupBatch sends the lookup as a read (key_ids in the query): Vault asks an
// external plugin's existence check before every write, a second round trip
// to the plugin per lookup that a read does not cost. A read refused with 403
// (a policy that grants only the write, as the policy did before reads were
// used) or 405 (a plugin without the read) is sent again as a write, and when
// that succeeds under the same token, lookups are writes until a new token is
// set. The refused read does not make the login replace the token: a write
// refused too does.
func (v *vaultAPI) lookupBatch(ctx context.Context, ids []string, b *wire.Batch) error {
	path := v.mount + "/lookup"
	refused, token := 0, v.tokens.Load()
	if !v.lookupByWrite.Load() {
		err := v.exchange(ctx, "lookup", http.MethodGet, path, url.Values{"key_ids": {strings.Join(ids, ",")}}, nil, into(b))
		if refused = vaultaddr.Status(err); refused != http.StatusForbidden && refused != http.StatusMethodNotAllowed {
			return err
		}
	}
	if err := v.write(ctx, "lookup", path, map[string][]string{"key_ids": ids}, into(b)); err != nil {
		return err
	}
	if refused != 0 && v.tokens.Load() == token && v.lookupByWrite.CompareAndSwap(false, true) {
		why := "the token's policy grants update but not read on the lookup path: grant read (policies/verifier.hcl)"
		if refused == http.StatusMethodNotAllowed {
			why = "the plugin does not answer a lookup read (a version before it did): upgrade it"
		}
		v.warn("lookups are sent as writes until the next login or restart; "+why+" to save a round trip to the plugin per lookup", "path", path, "status", refused)
	}
	return nil
}

// Changes reads the feed after the cursor, waiting up to wait for a change.
// afterID is the id of the entry at after ("" when unknown): the plugin answers
// a reset when its entry there is another one (a recreated or restored mount).
func (v *vaultAPI) Changes(ctx context.Context, after uint64, afterID string, wait time.Duration) (wire.Changes, error) {
	var ch wire.Changes
	q := url.Values{
		"after": {strconv.FormatUint(after, 10)},
		"wait":  {strconv.FormatInt(wait.Milliseconds(), 10) + "ms"},
	}
	if afterID != "" {
		q["after_id"] = []string{afterID}
	}
	if v.holdCreated > 0 {
		q["hold_created"] = []string{v.holdCreated.String()}
	}
	if err := v.call(ctx, "changes", http.MethodGet, v.mount+"/changes", q, nil, into(&ch)); err != nil {
		return ch, fmt.Errorf("read change feed after %d: %w", after, err)
	}
	return ch, nil
}

// ReportUsage writes one batch of usage.
func (v *vaultAPI) ReportUsage(ctx context.Context, u []wire.Usage) error {
	if err := v.write(ctx, "usage", v.mount+"/usage", map[string][]wire.Usage{"usage": u}, nil); err != nil {
		return fmt.Errorf("report usage of %d keys: %w", len(u), err)
	}
	return nil
}

// Decrypt unwraps data keys with transit batch decrypt. The result holds a
// key or nil (that item failed) per input, in order.
//
// Transit answers 400 for the whole batch when one item fails. The request
// asks for 200 on a partial failure (partial_failure_response_code), so a
// mixed batch costs one call; a 400 then means every item failed, or a Vault
// that ignores the parameter: the halves are asked again, down to single
// items, so one undecryptable record fails alone, never the misses batched
// with it.
func (v *vaultAPI) Decrypt(ctx context.Context, wrapped []string) ([][]byte, error) {
	keys := make([][]byte, len(wrapped))
	if err := v.decryptInto(ctx, wrapped, keys); err != nil {
		return nil, err
	}
	return keys, nil
}

func (v *vaultAPI) decryptInto(ctx context.Context, wrapped []string, keys [][]byte) error {
	err := v.decryptBatch(ctx, wrapped, keys)
	if vaultaddr.Status(err) != http.StatusBadRequest {
		return err
	}
	if len(wrapped) == 1 {
		return nil // this one cannot be unwrapped: its key stays nil
	}
	h := len(wrapped) / 2
	if err := v.decryptInto(ctx, wrapped[:h], keys[:h]); err != nil {
		return err
	}
	return v.decryptInto(ctx, wrapped[h:], keys[h:])
}

func (v *vaultAPI) decryptBatch(ctx context.Context, wrapped []string, keys [][]byte) error {
	type item struct {
		Ciphertext string `json:"ciphertext"`
	}
	in := make([]item, len(wrapped))
	for i, w := range wrapped {
		in[i] = item{Ciphertext: w}
	}
	var out struct {
		Results []struct {
			Plaintext string `json:"plaintext"`
			Error     string `json:"error"`
		} `json:"batch_results"`
	}
	err := v.write(ctx, "decrypt", v.transitMount+"/decrypt/"+v.transitKey,
		map[string]any{"batch_input": in, "partial_failure_response_code": http.StatusOK}, into(&out))
	if err != nil {
		return fmt.Errorf("transit decrypt of %d data keys: %w", len(wrapped), err)
	}
	if len(out.Results) != len(wrapped) {
		return fmt.Errorf("transit decrypt of %d data keys returned %d results", len(wrapped), len(out.Results))
	}
	for i, r := range out.Results {
		if r.Error != "" {
			continue
		}
		if k, err := base64.StdEncoding.DecodeString(r.Plaintext); err == nil {
			keys[i] = k
		}
	}
	return nil
}
