package backend

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-secure-stdlib/parseutil"
	"github.com/hashicorp/vault/api"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/vaultaddr"
)

// transitTimeout bounds every call to transit. Vault's seal and step-down wait
// for in-flight requests, and a handler's call back into the same Vault queues
// behind that wait: a long timeout would freeze both.
const transitTimeout = 3 * time.Second

// dataKey is one DEK: plaintext in memory only, wrapped form stored in records.
type dataKey struct {
	plaintext []byte
	wrapped   string
	born      time.Time
	uses      int
}

// TransitSealer seals with data keys from transit/datakey/plaintext and keeps the
// next one ready in a background goroutine. It renews its own token.
type TransitSealer struct {
	// clients reach each configured Vault address; in an HA cluster any node
	// forwards to the active one, so a dead node is skipped.
	clients []*api.Client
	ring    *vaultaddr.Ring // starts calls at the client that answered last
	dekPath string
	rewrap  string
	maxUses int
	ttl     time.Duration
	logger  hclog.Logger

	mu   sync.Mutex
	cur  *dataKey
	next *dataKey
	// gen counts Forget calls: a data key fetched before one may be wrapped
	// under a KEK version rewrap has already moved past, so it is not installed.
	gen    uint64
	closed bool
	// refills counts finished refill rounds (tests wait on it).
	refills atomic.Uint64

	wake chan struct{}
	stop chan struct{}
	done sync.WaitGroup
}

// NewTransitSealer builds a TransitSealer and fetches its first data key, so a
// wrong address, token, mount or key name fails here with a clear message.
func NewTransitSealer(ctx context.Context, cfg *Config, logger hclog.Logger) (Sealer, error) {
	var clients []*api.Client
	for _, addr := range vaultaddr.Split(cfg.VaultAddr) {
		conf := api.DefaultConfig()
		conf.Address = addr
		conf.Timeout = transitTimeout
		conf.MaxRetries = 0
		if cfg.CACert != "" {
			if err := conf.ConfigureTLS(&api.TLSConfig{CACertBytes: []byte(cfg.CACert)}); err != nil {
				return nil, fmt.Errorf("transit client for %s: ca_cert: %w", addr, err)
			}
		}
		client, err := api.NewClient(conf)
		if err != nil {
			return nil, fmt.Errorf("transit client for %s: %w", addr, err)
		}
		client.SetToken(cfg.Token)
		client.SetNamespace("")
		clients = append(clients, client)
	}
	s := &TransitSealer{
		clients: clients,
		ring:    vaultaddr.NewRing(len(clients)),
		dekPath: fmt.Sprintf("%s/datakey/plaintext/%s", cfg.TransitMount, cfg.TransitKey),
		rewrap:  fmt.Sprintf("%s/rewrap/%s", cfg.TransitMount, cfg.TransitKey),
		maxUses: cfg.DEKMaxUses,
		ttl:     cfg.DEKTTL,
		logger:  logger,
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	first, err := s.fetch(ctx)
	if err != nil {
		return nil, err
	}
	s.cur = first
	s.done.Add(2)
	go s.refillLoop()
	go s.renewLoop()
	return s, nil
}

// Seal implements Sealer. It seals with its own copy of the data key: Close
// (a config write) zeroes the sealer's keys while seals may be in flight.
func (s *TransitSealer) Seal(ctx context.Context, aad, plaintext []byte) (envelope.Sealed, error) {
	dek, wrapped, err := s.take(ctx)
	if err != nil {
		return envelope.Sealed{}, err
	}
	defer clear(dek)
	return envelope.Seal(dek, wrapped, aad, plaintext)
}

// take returns a copy of a usable data key, counting one use. It waits on
// transit only when both the current and the prepared key are spent.
func (s *TransitSealer) take(ctx context.Context) ([]byte, string, error) {
	now := time.Now()
	s.mu.Lock()
	if !s.usable(s.cur, now) && s.usable(s.next, now) {
		s.cur, s.next = s.next, nil
	}
	if s.usable(s.cur, now) {
		dk := s.cur
		dk.uses++
		if s.next == nil && (dk.uses*4 >= s.maxUses*3 || now.Sub(dk.born)*4 >= s.ttl*3) {
			s.signal()
		}
		defer s.mu.Unlock()
		return bytes.Clone(dk.plaintext), dk.wrapped, nil
	}
	s.mu.Unlock()
	// A key fetched while Forget ran may predate a KEK rotation: fetch again.
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		gen := s.gen
		s.mu.Unlock()
		dk, err := s.fetch(ctx)
		if err != nil {
			// The request fails; the operator learns why from Vault's log too.
			s.logger.Warn("transit unreachable: no data key to seal with, keys cannot be issued", "error", err)
			return nil, "", err
		}
		s.mu.Lock()
		if s.gen != gen {
			s.mu.Unlock()
			clear(dk.plaintext)
			if attempt > 0 {
				return nil, "", errors.New("data keys are being rotated out (rewrap): retry")
			}
			continue
		}
		dk.uses++
		out := bytes.Clone(dk.plaintext)
		if !s.closed && !s.usable(s.cur, now) {
			s.cur = dk
		} else {
			clear(dk.plaintext)
		}
		s.signal()
		s.mu.Unlock()
		return out, dk.wrapped, nil
	}
}

func (s *TransitSealer) usable(dk *dataKey, now time.Time) bool {
	return dk != nil && dk.uses < s.maxUses && now.Sub(dk.born) < s.ttl
}

func (s *TransitSealer) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// refillLoop keeps a fresh data key prepared so request handlers don't wait.
func (s *TransitSealer) refillLoop() {
	defer s.done.Done()
	tick := time.NewTicker(s.ttl / 4)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-tick.C:
		}
		s.mu.Lock()
		need := !s.usable(s.next, time.Now())
		gen := s.gen
		s.mu.Unlock()
		if need {
			s.refill(gen)
		}
		s.refills.Add(1)
	}
}

// refill fetches the next data key and installs it unless Forget ran since gen
// was read: a key fetched across a KEK rotation may be wrapped under the old
// version, which rewrap has already passed over.
func (s *TransitSealer) refill(gen uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), transitTimeout)
	dk, err := s.fetch(ctx)
	cancel()
	if err != nil {
		s.logger.Warn("prepare data key", "error", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || s.closed {
		clear(dk.plaintext)
		return
	}
	s.next = dk
}

func (s *TransitSealer) fetch(ctx context.Context) (*dataKey, error) {
	ctx, cancel := context.WithTimeout(ctx, transitTimeout)
	defer cancel()
	var sec *api.Secret
	err := s.call(func(c *api.Client) (err error) {
		sec, err = c.Logical().WriteWithContext(ctx, s.dekPath, map[string]interface{}{"bits": 256})
		return err
	})
	if err != nil {
		return nil, transitError("get a data key from "+s.dekPath, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("transit %s returned no data key", s.dekPath)
	}
	pt, _ := sec.Data["plaintext"].(string)
	wrapped, _ := sec.Data["ciphertext"].(string)
	raw, err := base64.StdEncoding.DecodeString(pt)
	if err != nil || len(raw) != envelope.DEKSize || wrapped == "" {
		return nil, fmt.Errorf("transit %s returned a malformed data key (is the key type aes256-gcm96?)", s.dekPath)
	}
	return &dataKey{plaintext: raw, wrapped: wrapped, born: time.Now()}, nil
}

// Rewrap implements Sealer with one batched transit/rewrap call per 250 keys.
func (s *TransitSealer) Rewrap(ctx context.Context, wrapped []string) ([]string, error) {
	out := make([]string, 0, len(wrapped))
	for start := 0; start < len(wrapped); start += 250 {
		end := min(start+250, len(wrapped))
		batch := make([]map[string]interface{}, 0, end-start)
		for _, w := range wrapped[start:end] {
			batch = append(batch, map[string]interface{}{"ciphertext": w})
		}
		cctx, cancel := context.WithTimeout(ctx, transitTimeout)
		var sec *api.Secret
		err := s.call(func(c *api.Client) (err error) {
			sec, err = c.Logical().WriteWithContext(cctx, s.rewrap, map[string]interface{}{"batch_input": batch})
			return err
		})
		cancel()
		if err != nil {
			return nil, transitError("rewrap data keys with "+s.rewrap, err)
		}
		results, _ := sec.Data["batch_results"].([]interface{})
		if len(results) != end-start {
			return nil, fmt.Errorf("transit %s returned %d results for %d keys", s.rewrap, len(results), end-start)
		}
		for _, r := range results {
			m, _ := r.(map[string]interface{})
			if e, _ := m["error"].(string); e != "" {
				return nil, fmt.Errorf("transit %s: %s", s.rewrap, e)
			}
			ct, _ := m["ciphertext"].(string)
			out = append(out, ct)
		}
	}
	return out, nil
}

// renewLoop keeps a renewable token alive at half its TTL.
func (s *TransitSealer) renewLoop() {
	defer s.done.Done()
	wait := time.Duration(0)
	for {
		if wait > 0 {
			select {
			case <-s.stop:
				return
			case <-time.After(wait):
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), transitTimeout)
		ttl, renewable, err := s.tokenTTL(ctx)
		if err == nil && renewable && ttl > 0 {
			err = s.call(func(c *api.Client) error {
				_, err := c.Auth().Token().RenewSelfWithContext(ctx, int(ttl.Seconds()))
				return err
			})
		}
		cancel()
		switch {
		case err != nil:
			s.logger.Warn("renew transit token", "error", err)
			wait = 30 * time.Second
		case !renewable || ttl == 0:
			return // root or non-expiring token: nothing to renew
		default:
			wait = max(ttl/2, time.Second)
		}
	}
}

func (s *TransitSealer) tokenTTL(ctx context.Context) (time.Duration, bool, error) {
	var sec *api.Secret
	err := s.call(func(c *api.Client) (err error) {
		sec, err = c.Auth().Token().LookupSelfWithContext(ctx)
		return err
	})
	if err != nil {
		return 0, false, err
	}
	ttl, err := sec.TokenTTL()
	if err != nil {
		return 0, false, err
	}
	renewable, _ := sec.TokenIsRenewable()
	if p, ok := sec.Data["period"]; ok && p != nil {
		if period, err := parseutil.ParseDurationSecond(p); err == nil && period > 0 {
			ttl = period
		}
	}
	return ttl, renewable, nil
}

// Forget implements Sealer.
func (s *TransitSealer) Forget() {
	s.mu.Lock()
	s.gen++
	s.cur, s.next = nil, nil
	s.mu.Unlock()
	s.signal()
}

// call runs fn against the last good address first, then the others, moving on
// only when an address cannot be reached (a Vault answer, even an error, stops).
func (s *TransitSealer) call(fn func(*api.Client) error) error {
	return s.ring.Do(0, func(i int) error { return fn(s.clients[i]) })
}

// Close implements Sealer.
func (s *TransitSealer) Close() {
	select {
	case <-s.stop:
		return
	default:
		close(s.stop)
	}
	s.done.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, dk := range []*dataKey{s.cur, s.next} {
		if dk != nil {
			clear(dk.plaintext)
		}
	}
	s.cur, s.next = nil, nil
}

// transitError turns an api error into one that says what to fix.
func transitError(what string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusForbidden:
			return fmt.Errorf("cannot %s: permission denied; give the config token a policy with "+
				"update on that path (see policies/plugin-transit.hcl)", what)
		case http.StatusNotFound, http.StatusBadRequest:
			return fmt.Errorf("cannot %s: %v; is transit enabled and the key created "+
				"(vault secrets enable transit; vault write -f transit/keys/apikeys)?", what, re.Errors)
		}
		return fmt.Errorf("cannot %s: vault answered %d: %v", what, re.StatusCode, re.Errors)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("cannot %s: transit did not answer within %s", what, transitTimeout)
	}
	return fmt.Errorf("cannot %s: %w", what, err)
}
