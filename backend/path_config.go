package backend

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/vaultaddr"
)

const storageConfig = "config"

// Config is the mount's configuration. Token is write-only: never returned.
type Config struct {
	VaultAddr    string `json:"vault_addr"`
	TransitMount string `json:"transit_mount"`
	TransitKey   string `json:"transit_key"`
	Token        string `json:"token"`
	Prefix       string `json:"prefix"`
	MaxKeys      int    `json:"max_keys"`
	// MaxKeysPerTenant is every tenant's quota unless its own max_keys says otherwise.
	MaxKeysPerTenant int `json:"max_keys_per_tenant"`
	// CreatorRoleKey is the entity metadata key that names a creator's platform
	// role: a key never has more permissions than that role has now.
	CreatorRoleKey     string        `json:"creator_role_key"`
	DefaultTTL         time.Duration `json:"default_ttl"`
	MaxTTL             time.Duration `json:"max_ttl"`
	TombstoneRetention time.Duration `json:"tombstone_retention"`
	FeedRetention      time.Duration `json:"feed_retention"`
	DEKMaxUses         int           `json:"dek_max_uses"`
	DEKTTL             time.Duration `json:"dek_ttl"`
	// OrphanGrace is how long a creating entity must be seen absent, in
	// consecutive runs of the job and after this node took over, before its
	// keys are revoked: identities load after periodic work starts.
	OrphanGrace time.Duration `json:"orphan_grace"`
	// CACert is the PEM CA bundle trusted for transit over https (not a
	// secret; empty = the system roots, or VAULT_CACERT in the plugin's environment).
	CACert string `json:"ca_cert"`
	// MountID binds sealed records to this mount (envelope.AAD); set once.
	MountID string `json:"mount_id"`
}

func defaultConfig() *Config {
	return &Config{
		TransitMount:       "transit",
		TransitKey:         "apikeys",
		Prefix:             token.DefaultPrefix,
		MaxKeysPerTenant:   10000,
		CreatorRoleKey:     "apikeys_role",
		TombstoneRetention: 720 * time.Hour,
		FeedRetention:      72 * time.Hour,
		DEKMaxUses:         10000,
		DEKTTL:             time.Hour,
		OrphanGrace:        15 * time.Minute,
	}
}

// errNoConfig tells the operator what to write before anything else works.
var errNoConfig = errors.New("the mount is not configured: write config first, for example " +
	"`vault write apikeys/config vault_addr=https://127.0.0.1:8200 token=<transit token>`")

func pathConfig(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "config",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "configuration"},
		Fields: map[string]*framework.FieldSchema{
			"vault_addr":          {Type: framework.TypeString, Description: "Address of this Vault's API, used to reach transit (e.g. https://127.0.0.1:8200); in an HA cluster, a comma-separated list of every node."},
			"ca_cert":             {Type: framework.TypeString, Description: "PEM CA certificate(s) the plugin trusts when it reaches transit over https (vault_addr https://…). Empty: the system roots, or VAULT_CACERT in the plugin's environment. Not secret: read shows it."},
			"transit_mount":       {Type: framework.TypeString, Default: "transit", Description: "Mount path of the transit engine that wraps data keys."},
			"transit_key":         {Type: framework.TypeString, Default: "apikeys", Description: "Name of the transit key (KEK) that wraps data keys."},
			"token":               {Type: framework.TypeString, Description: "Write-only. Vault token for transit: datakey/plaintext and rewrap on the KEK, renew-self. Renewed by the plugin; never returned.", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
			"prefix":              {Type: framework.TypeString, Default: token.DefaultPrefix, Description: "Prefix of issued keys: [a-z][a-z0-9]{1,9}."},
			"max_keys":            {Type: framework.TypeInt, Default: 0, Description: "Most live keys the whole mount may hold (0 = unlimited)."},
			"max_keys_per_tenant": {Type: framework.TypeInt, Default: 10000, Description: "Most live keys one tenant may hold unless tenants/<tenant> max_keys overrides it (0 = unlimited)."},
			"creator_role_key":    {Type: framework.TypeString, Default: "apikeys_role", Description: "Identity entity metadata key naming the creator's platform role: a key's permissions are capped by that role's current ones. A creator without it (root, machine tokens) sets no ceiling."},
			"default_ttl":         {Type: framework.TypeDurationSecond, Description: "Key lifetime when neither the request nor the role sets one (0 = role max, else never)."},
			"max_ttl":             {Type: framework.TypeDurationSecond, Description: "Longest key lifetime the mount allows (0 = no mount-wide limit)."},
			"tombstone_retention": {Type: framework.TypeDurationSecond, Default: "720h", Description: "How long revoked key_ids are remembered so verifiers answer REVOKED."},
			"feed_retention":      {Type: framework.TypeDurationSecond, Default: "72h", Description: "How long change-feed entries are kept; followers further behind get reset=true."},
			"dek_max_uses":        {Type: framework.TypeInt, Default: 10000, Description: "Most records sealed under one data key before a fresh one is used."},
			"dek_ttl":             {Type: framework.TypeDurationSecond, Default: "1h", Description: "Longest time one data key seals new records."},
			"orphan_grace":        {Type: framework.TypeDurationSecond, Default: "15m", Description: "How long a key's creating entity must be absent (in consecutive runs of the periodic job, and after an unseal or leadership change) before the key is revoked. 0 revokes at the first run that finds it absent."},
		},
		ExistenceCheck: b.configExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation:   &framework.PathOperation{Callback: b.pathConfigRead},
			logical.CreateOperation: &framework.PathOperation{Callback: b.pathConfigWrite},
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathConfigWrite},
		},
		HelpSynopsis:    pathConfigHelpSyn,
		HelpDescription: pathConfigHelpDesc,
	}}
}

func (b *Backend) configExists(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := b.loadConfig(ctx, req.Storage)
	return cfg != nil, err
}

// loadConfig returns the stored config, or nil when none was written.
func (b *Backend) loadConfig(ctx context.Context, s logical.Storage) (*Config, error) {
	b.sealerMu.RLock()
	cfg := b.cfg
	b.sealerMu.RUnlock()
	if cfg != nil {
		return cfg, nil
	}
	entry, err := s.Get(ctx, storageConfig)
	if err != nil || entry == nil {
		return nil, err
	}
	cfg = defaultConfig()
	if err := entry.DecodeJSON(cfg); err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	b.sealerMu.Lock()
	b.cfg = cfg
	b.sealerMu.Unlock()
	return cfg, nil
}

func (b *Backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return logical.ErrorResponse(errNoConfig.Error()), nil
	}
	return &logical.Response{Data: map[string]interface{}{
		"vault_addr":          cfg.VaultAddr,
		"transit_mount":       cfg.TransitMount,
		"transit_key":         cfg.TransitKey,
		"token_set":           cfg.Token != "",
		"ca_cert":             cfg.CACert,
		"prefix":              cfg.Prefix,
		"max_keys":            cfg.MaxKeys,
		"max_keys_per_tenant": cfg.MaxKeysPerTenant,
		"creator_role_key":    cfg.CreatorRoleKey,
		"default_ttl":         int64(cfg.DefaultTTL.Seconds()),
		"max_ttl":             int64(cfg.MaxTTL.Seconds()),
		"tombstone_retention": int64(cfg.TombstoneRetention.Seconds()),
		"feed_retention":      int64(cfg.FeedRetention.Seconds()),
		"dek_max_uses":        cfg.DEKMaxUses,
		"dek_ttl":             int64(cfg.DEKTTL.Seconds()),
		"orphan_grace":        int64(cfg.OrphanGrace.Seconds()),
		"mount_id":            cfg.MountID,
	}}, nil
}

func (b *Backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	old, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	cfg := defaultConfig()
	if old != nil {
		copied := *old
		cfg = &copied
	}
	str := func(field string, dst *string) {
		if v, ok := d.GetOk(field); ok {
			*dst = v.(string)
		}
	}
	str("vault_addr", &cfg.VaultAddr)
	str("transit_mount", &cfg.TransitMount)
	str("transit_key", &cfg.TransitKey)
	str("token", &cfg.Token)
	str("prefix", &cfg.Prefix)
	str("ca_cert", &cfg.CACert)
	str("creator_role_key", &cfg.CreatorRoleKey)
	num := func(field string, dst *int) {
		if v, ok := d.GetOk(field); ok {
			*dst = v.(int)
		}
	}
	num("max_keys", &cfg.MaxKeys)
	num("max_keys_per_tenant", &cfg.MaxKeysPerTenant)
	num("dek_max_uses", &cfg.DEKMaxUses)
	dur := func(field string, dst *time.Duration) {
		if v, ok := d.GetOk(field); ok {
			*dst = time.Duration(v.(int)) * time.Second
		}
	}
	dur("default_ttl", &cfg.DefaultTTL)
	dur("max_ttl", &cfg.MaxTTL)
	dur("tombstone_retention", &cfg.TombstoneRetention)
	dur("feed_retention", &cfg.FeedRetention)
	dur("dek_ttl", &cfg.DEKTTL)
	dur("orphan_grace", &cfg.OrphanGrace)

	if msg := cfg.validate(); msg != "" {
		return logical.ErrorResponse(msg), logical.ErrInvalidRequest
	}
	if cfg.MountID == "" {
		if cfg.MountID, err = token.NewKeyID(); err != nil {
			return nil, err
		}
	}
	// Prove the transit settings work before storing them, so a typo is an error
	// now rather than a failed issuance later.
	sealer, err := b.newSealer(ctx, cfg, b.logger)
	if err != nil {
		return logical.ErrorResponse(err.Error()), logical.ErrInvalidRequest
	}
	entry, err := logical.StorageEntryJSON(storageConfig, cfg)
	if err != nil {
		sealer.Close()
		return nil, err
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		sealer.Close()
		return nil, fmt.Errorf("store config: %w", err)
	}
	b.sealerMu.Lock()
	if b.sealer != nil {
		b.sealer.Close()
	}
	b.sealer, b.cfg = sealer, cfg
	b.sealerMu.Unlock()
	// Never the token: only where transit is and what was set.
	b.logger.Info("config written", "vault_addr", cfg.VaultAddr, "transit", cfg.TransitMount+"/"+cfg.TransitKey,
		"ca_cert_set", cfg.CACert != "", "prefix", cfg.Prefix, "mount_id", cfg.MountID)
	return nil, nil
}

func (c *Config) validate() string {
	switch {
	case c.VaultAddr == "":
		return "vault_addr is required: the address of this Vault's API, e.g. https://127.0.0.1:8200"
	case c.Token == "":
		return "token is required: a Vault token allowed to use transit/datakey/plaintext/" + c.TransitKey
	case !token.ValidPrefix(c.Prefix):
		return fmt.Sprintf("prefix %q is invalid: use 2-10 characters, a lowercase letter then lowercase letters or digits", c.Prefix)
	case c.TransitMount == "" || c.TransitKey == "":
		return "transit_mount and transit_key must not be empty"
	case c.MaxKeys < 0:
		return "max_keys must be 0 (unlimited) or positive"
	case c.MaxKeysPerTenant < 0:
		return "max_keys_per_tenant must be 0 (unlimited) or positive"
	case c.CreatorRoleKey == "" || !metaKeyRe.MatchString(c.CreatorRoleKey):
		return "creator_role_key must be a metadata key: letters, digits, '.', '_' and '-'"
	case c.DEKMaxUses < 1:
		return "dek_max_uses must be at least 1"
	case c.DefaultTTL < 0 || c.MaxTTL < 0 || c.TombstoneRetention < 0 || c.FeedRetention < 0 || c.DEKTTL < 0 || c.OrphanGrace < 0:
		return "durations must not be negative"
	case c.MaxTTL > 0 && c.DefaultTTL > c.MaxTTL:
		return fmt.Sprintf("default_ttl %s is longer than max_ttl %s", c.DefaultTTL, c.MaxTTL)
	case c.DEKTTL == 0:
		return "dek_ttl must be positive"
	}
	if c.CACert != "" {
		if err := checkPEMCerts(c.CACert); err != nil {
			return "ca_cert " + err.Error()
		}
	}
	for _, addr := range vaultaddr.Split(c.VaultAddr) {
		u, err := url.Parse(addr)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Sprintf("vault_addr %q is not an http(s) URL (or a comma-separated list of them)", addr)
		}
	}
	return ""
}

// checkPEMCerts accepts one or more PEM CERTIFICATE blocks, each a parsable
// X.509 certificate, and nothing else (a private key pasted by mistake is
// refused, and never quoted back).
func checkPEMCerts(bundle string) error {
	rest := []byte(strings.TrimSpace(bundle))
	n := 0
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		switch {
		case block == nil:
			return errors.New("is not PEM: give one or more -----BEGIN CERTIFICATE----- blocks (e.g. ca_cert=@ca.pem)")
		case block.Type != "CERTIFICATE":
			return fmt.Errorf("holds a PEM block of type %q: only CERTIFICATE blocks belong here", printable(block.Type))
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %v", n+1, err)
		}
		n++
		rest = bytes.TrimSpace(rest)
	}
	if n == 0 {
		return errors.New("holds no certificate")
	}
	return nil
}

// sealerFor returns the mount's Sealer and config, building the Sealer after a
// restart. It fails with errNoConfig when the mount was never configured.
func (b *Backend) sealerFor(ctx context.Context, s logical.Storage) (Sealer, *Config, error) {
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	if cfg == nil {
		return nil, nil, errNoConfig
	}
	b.sealerMu.RLock()
	sealer := b.sealer
	b.sealerMu.RUnlock()
	if sealer != nil {
		return sealer, cfg, nil
	}
	b.sealerMu.Lock()
	defer b.sealerMu.Unlock()
	if b.sealer == nil {
		if b.sealer, err = b.newSealer(ctx, cfg, b.logger); err != nil {
			return nil, nil, err
		}
	}
	return b.sealer, cfg, nil
}

const pathConfigHelpSyn = `Configure transit access, key format, quotas and retention for this mount.`

const pathConfigHelpDesc = `
The plugin reaches this Vault's transit engine over the HTTP API with its own
narrow token (policy: update transit/datakey/plaintext/<key> and
transit/rewrap/<key>, update auth/token/renew-self). The token is write-only and
renewed by the plugin. Writing config checks that a data key can be obtained.
`
