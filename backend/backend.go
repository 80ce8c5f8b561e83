package backend

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

const backendHelp = `
The apikeys secrets engine issues and revokes API keys for the tenants of a
platform: each tenant's keys live under tenants/<tenant>/. Keys are shown once
at creation; records keep only a digest sealed under a data key that
Vault's transit engine wraps. Verifiers read "lookup" and follow "changes".
`

// SealerFactory builds the Sealer for a configuration. Tests swap it for an
// in-process implementation.
type SealerFactory func(ctx context.Context, cfg *Config, logger hclog.Logger) (Sealer, error)

// Backend is the secrets engine. It holds only what lives across requests;
// everything durable is in logical.Storage.
type Backend struct {
	*framework.Backend

	logger    hclog.Logger
	newSealer SealerFactory
	now       func() time.Time

	nameLocks []*locksutil.LockEntry
	// roleLocks order issuance against role updates and deletes (lifecycle.go).
	roleLocks []*locksutil.LockEntry
	// tenantLocks order issuance and patches against changes of a tenant's
	// settings and allow-lists (tenant.go). Locks are taken role, tenant, name.
	tenantLocks []*locksutil.LockEntry
	tidyMu      sync.Mutex
	// tidyRuns tracks background and periodic tidy runs (tidy_run.go).
	tidyRuns tidyRuns
	// bgCtx is the context of background work, cancelled when the backend is
	// torn down (Clean).
	bgCtx    context.Context
	bgCancel context.CancelFunc

	// entityInfo looks up a creating entity (System().EntityInfo; tests swap it).
	entityInfo func(entityID string) (*logical.Entity, error)
	// startedAt is when this node began serving (initialize: mount, unseal or
	// leadership change); orphanSince is when each creating entity was first
	// seen absent in the current streak of runs. Both guarded by tidyMu.
	startedAt   time.Time
	orphanSince map[string]time.Time
	// creators is the creator pass's memory (ceiling.go), guarded by tidyMu.
	creators creatorPass

	// sealerMu guards sealer and cfg, rebuilt when config is written.
	sealerMu sync.RWMutex
	sealer   Sealer
	cfg      *Config

	feed *Feed
	// createMarks coalesces the publish marks of concurrent creates.
	createMarks *createMarks
	index       *Index
	// roles caches roles by name (nil = known absent): lookups read one on every miss.
	roles *readCache[*Role]
	// tenants and allowlists cache tenant settings and named allow-lists: a
	// lookup reads its key's tenant and lists on every miss.
	tenants    *readCache[*Tenant]
	allowlists *readCache[*Allowlist]
	// records caches key records by key_id: verifier lookups read them on
	// every miss, and this node is the only writer (putRecord keeps it current).
	records *readCache[*Record]
	// usage caches use counts by key_id (nil = none yet): every verifier report
	// reads and writes each key it names, and this node is the only writer.
	usage *readCache[*wire.Usage]
	// usageWorkers bounds the keys of one usage report merged at once.
	usageWorkers int
}

// recordCacheSize bounds the record cache (~1 KiB a record).
const recordCacheSize = 100000

// roleCacheSize bounds the role cache; an evicted role is read again.
const roleCacheSize = 10000

// Factory returns the logical.Factory of the plugin. version is reported to
// Vault as the mount's running version; the plugin owns it (plugin.Version).
func Factory(version string) logical.Factory {
	return func(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
		b := New(NewTransitSealer)
		b.Backend.RunningVersion = version
		if err := b.Setup(ctx, conf); err != nil {
			return nil, err
		}
		return b, nil
	}
}

// New builds an unconfigured backend; call Setup before use.
func New(newSealer SealerFactory) *Backend {
	b := &Backend{
		newSealer:   newSealer,
		now:         func() time.Time { return time.Now().UTC() },
		nameLocks:   locksutil.CreateLocks(),
		roleLocks:   locksutil.CreateLocks(),
		tenantLocks: locksutil.CreateLocks(),
		tenants:     newReadCache[*Tenant](recordCacheSize),
		allowlists:  newReadCache[*Allowlist](roleCacheSize),
		feed:        NewFeed(),
		createMarks: newCreateMarks(),
		index:       NewIndex(),
		roles:       newReadCache[*Role](roleCacheSize),
		orphanSince: map[string]time.Time{},
		records:     newReadCache[*Record](recordCacheSize),
		usage:       newReadCache[*wire.Usage](recordCacheSize),

		usageWorkers: defaultUsageWorkers,
	}
	b.bgCtx, b.bgCancel = context.WithCancel(context.Background())
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{storageConfig},
		},
		Paths: framework.PathAppend(
			pathConfig(b),
			pathRoles(b),
			pathTenants(b),
			pathAllowlists(b),
			pathKeyActions(b),
			pathKeys(b),
			pathRevoke(b),
			pathLookup(b),
			pathChanges(b),
			pathUsage(b),
			pathTidy(b),
			pathReports(b),
			pathRewrap(b),
		),
		InitializeFunc: b.initialize,
		PeriodicFunc:   b.periodic,
		Clean:          b.teardown,
		Invalidate:     b.invalidate,
	}
	return b
}

// Setup wires the framework backend, with Vault's system view behind a
// replication-state cache (replicationView), and keeps its logger.
func (b *Backend) Setup(ctx context.Context, conf *logical.BackendConfig) error {
	own := *conf
	own.System = newReplicationView(conf.System)
	conf = &own
	if err := b.Backend.Setup(ctx, conf); err != nil {
		return err
	}
	b.logger = conf.Logger
	if b.logger == nil {
		b.logger = hclog.NewNullLogger()
	}
	return nil
}

// initialize loads the feed position on the node that serves requests.
func (b *Backend) initialize(ctx context.Context, req *logical.InitializationRequest) error {
	b.tidyMu.Lock()
	b.startedAt = b.now()
	clear(b.orphanSince)
	b.tidyMu.Unlock()
	return b.feed.Load(ctx, req.Storage)
}

// teardown stops background work and closes the sealer: the backend is
// being unmounted, reloaded or sealed.
func (b *Backend) teardown(ctx context.Context) {
	b.stopTidy()
	b.clean(ctx)
}

// clean closes the sealer; the next use builds it again from the config.
func (b *Backend) clean(context.Context) {
	b.sealerMu.Lock()
	defer b.sealerMu.Unlock()
	if b.sealer != nil {
		b.sealer.Close()
		b.sealer = nil
	}
}

// invalidate drops in-memory state a replica's storage write made stale.
func (b *Backend) invalidate(_ context.Context, key string) {
	switch {
	case key == storageConfig:
		b.clean(context.Background())
		b.sealerMu.Lock()
		b.cfg = nil
		b.sealerMu.Unlock()
	case strings.HasPrefix(key, storageRolePrefix):
		b.roles.Remove(strings.TrimPrefix(key, storageRolePrefix))
	case strings.HasPrefix(key, storageKeyPrefix):
		b.records.Remove(strings.TrimPrefix(key, storageKeyPrefix))
	case strings.HasPrefix(key, storageUsage):
		b.usage.Remove(strings.TrimPrefix(key, storageUsage))
	case strings.HasPrefix(key, storageTenantPrefix):
		b.tenants.Remove(strings.TrimPrefix(key, storageTenantPrefix))
	case strings.HasPrefix(key, storageAllowlistPrefix):
		b.allowlists.Remove(key) // cached under its storage key
	}
}

// periodic tidies; it runs only where writes are safe (not on standbys or
// performance secondaries).
func (b *Backend) periodic(ctx context.Context, req *logical.Request) error {
	if !b.writeSafe() {
		return nil
	}
	run, ok := b.claimTidy("periodic")
	if !ok {
		return nil // a run is already going
	}
	return b.finishTidy(ctx, req.Storage, run)
}

func (b *Backend) writeSafe() bool {
	if b.System() == nil {
		return true
	}
	state := b.System().ReplicationState()
	return !state.HasState(consts.ReplicationPerformanceSecondary | consts.ReplicationPerformanceStandby | consts.ReplicationDRSecondary)
}

func (b *Backend) nameLock(name string) *locksutil.LockEntry {
	return locksutil.LockForKey(b.nameLocks, name)
}
