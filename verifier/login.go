package verifier

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
)

const (
	loginBackoffMin = 500 * time.Millisecond
	loginBackoffMax = 30 * time.Second
	// tokenFileCheck is how often a token file is re-read for a new token.
	tokenFileCheck = 10 * time.Second
	// selfCheck is how often a token whose lookup failed is looked up again.
	selfCheck = time.Minute
)

// login keeps a valid token on the Vault clients: a fixed token, a token file
// (re-read when it changes), or AppRole (logged in again when renewal ends).
// Renewable tokens are renewed with Vault's LifetimeWatcher.
type login struct {
	cfg   *Config
	vault *vaultAPI
	log   hclog.Logger
	kick  chan struct{}

	once  sync.Once
	ready chan struct{}
}

func newLogin(cfg *Config, v *vaultAPI, log hclog.Logger) *login {
	return &login{cfg: cfg, vault: v, log: log, kick: make(chan struct{}, 1), ready: make(chan struct{})}
}

// Kick asks for a new token: Vault refused the current one.
func (l *login) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Wait returns once a token is set, or with ctx's error.
func (l *login) Wait(ctx context.Context) error {
	select {
	case <-l.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run authenticates and keeps the token fresh until ctx is done.
func (l *login) Run(ctx context.Context) {
	backoff := loginBackoffMin
	for ctx.Err() == nil {
		secret, fileToken, err := l.authenticate(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.log.Error("vault login failed: retrying", "error", err, "retry_in", backoff)
			sleep(ctx, backoff)
			backoff = min(2*backoff, loginBackoffMax)
			continue
		}
		l.once.Do(func() { close(l.ready) })
		if kicked := l.hold(ctx, secret, fileToken); kicked {
			sleep(ctx, backoff) // Vault refused the token: do not hammer it
			backoff = min(2*backoff, loginBackoffMax)
		} else {
			backoff = loginBackoffMin
		}
	}
}

// authenticate sets a token and returns what can renew it (nil when nothing can
// be renewed), plus the token file's content when a file is used.
func (l *login) authenticate(ctx context.Context) (*api.Secret, string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.VaultTimeout)
	defer cancel()
	switch {
	case l.cfg.AppRoleRoleID != "":
		auth, err := approle.NewAppRoleAuth(l.cfg.AppRoleRoleID, &approle.SecretID{FromFile: l.cfg.AppRoleSecretIDFile})
		if err != nil {
			return nil, "", fmt.Errorf("approle: %w", err)
		}
		var s *api.Secret
		err = l.vault.failover(ctx, func(c *api.Client) error {
			if c, err = c.Clone(); err != nil {
				return err
			}
			s, err = c.Auth().Login(ctx, auth)
			return err
		})
		if err != nil {
			return nil, "", fmt.Errorf("approle login: %w", err)
		}
		if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
			return nil, "", errors.New("approle login returned no token")
		}
		l.vault.setToken(s.Auth.ClientToken)
		l.log.Info("logged in with AppRole", "ttl", time.Duration(s.Auth.LeaseDuration)*time.Second, "renewable", s.Auth.Renewable)
		return s, "", nil
	case l.cfg.VaultTokenFile != "":
		t, err := readTokenFile(l.cfg.VaultTokenFile)
		if err != nil {
			return nil, "", err
		}
		l.vault.setToken(t)
		return l.lookupSelf(ctx, t), t, nil
	default:
		l.vault.setToken(l.cfg.VaultToken)
		return l.lookupSelf(ctx, l.cfg.VaultToken), "", nil
	}
}

func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return t, nil
}

// lookupSelf describes a given token for renewal. A token that may not look
// itself up is still used, just not renewed.
func (l *login) lookupSelf(ctx context.Context, t string) *api.Secret {
	var s *api.Secret
	err := l.vault.failover(ctx, func(c *api.Client) (err error) {
		s, err = c.Auth().Token().LookupSelfWithContext(ctx)
		return err
	})
	if err != nil || s == nil {
		l.log.Warn("cannot look up the Vault token: using it without renewal", "error", err)
		return nil
	}
	renewable, _ := s.TokenIsRenewable()
	ttl, _ := s.TokenTTL()
	l.log.Info("using Vault token", "ttl", ttl, "renewable", renewable)
	if !renewable || ttl == 0 {
		return &api.Secret{} // a token that never expires needs no watcher
	}
	return &api.Secret{Auth: &api.SecretAuth{ClientToken: t, Renewable: true, LeaseDuration: int(ttl.Seconds())}}
}

// hold renews the token until it must be replaced. It reports whether Vault
// refused the token (a kick).
func (l *login) hold(ctx context.Context, secret *api.Secret, fileToken string) (kicked bool) {
	var done <-chan error
	var renewed <-chan *api.RenewOutput
	if secret != nil && secret.Auth != nil && secret.Auth.Renewable {
		w, err := l.vault.client().NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
		if err != nil {
			l.log.Warn("cannot renew the Vault token", "error", err)
		} else {
			go w.Start()
			defer w.Stop()
			done, renewed = w.DoneCh(), w.RenewCh()
		}
	}
	every := selfCheck
	if fileToken != "" {
		every = tokenFileCheck
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-l.kick:
			l.log.Warn("Vault refused the token: authenticating again")
			return true
		case err := <-done:
			l.log.Info("token renewal ended: authenticating again", "error", err)
			return false
		case r := <-renewed:
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				l.log.Debug("renewed Vault token", "ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second)
			}
		case <-t.C:
			if fileToken != "" {
				if t, err := readTokenFile(l.cfg.VaultTokenFile); err == nil && t != fileToken {
					l.log.Info("token file changed: using the new token")
					return false
				}
			}
			if secret == nil { // lookup failed earlier: try again
				return false
			}
		}
	}
}
