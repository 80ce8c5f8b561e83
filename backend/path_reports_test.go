package backend

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
)

func TestReports(t *testing.T) {
	e := configured(t)
	clock := time.Now().UTC()
	e.b.now = func() time.Time { return clock }
	e.mustOK(logical.CreateOperation, "roles/forever", map[string]interface{}{"permissions": "*"})
	for i := 0; i < 5; i++ {
		e.issue(fmt.Sprintf("soon-%d", i), map[string]interface{}{"ttl": "24h"})
	}
	e.issue("later", map[string]interface{}{"ttl": "2000h"})
	e.issue("never", map[string]interface{}{"role": "forever"})
	page := e.mustOK(logical.ReadOperation, "tenants/acme/report/expiring", map[string]interface{}{"within": "48h", "limit": 3}).Data
	assert.Equal(t, []string{"soon-0", "soon-1", "soon-2"}, page["keys"])
	assert.Equal(t, "soon-2", page["next"])
	rest := e.mustOK(logical.ReadOperation, "tenants/acme/report/expiring", map[string]interface{}{"within": "48h", "after": "soon-2"}).Data
	assert.Equal(t, []string{"soon-3", "soon-4"}, rest["keys"])
	assert.Equal(t, "", rest["next"])
	// Operators read the same report mount-wide: rows are <tenant>/<name>.
	mount := e.mustOK(logical.ReadOperation, "report/expiring", map[string]interface{}{"within": "48h", "tenant": "acme", "limit": 2}).Data
	assert.Equal(t, []string{"acme/soon-0", "acme/soon-1"}, mount["keys"])
	assert.Equal(t, "acme/soon-1", mount["next"])
	other := e.mustOK(logical.ReadOperation, "report/expiring", map[string]interface{}{"within": "48h", "tenant": "globex"}).Data
	assert.Empty(t, other["keys"], "another tenant's filter finds none of acme's keys")

	usedID := e.mustOK(logical.ReadOperation, "tenants/acme/keys/later", nil).Data["key_id"].(string)
	clock = clock.Add(10 * 24 * time.Hour)
	e.mustOK(logical.UpdateOperation, "usage", map[string]interface{}{"usage": []interface{}{
		map[string]interface{}{"key_id": usedID, "count": 1, "last_used_at": clock.Format(time.RFC3339)}}})
	stale := e.mustOK(logical.ReadOperation, "tenants/acme/report/stale", map[string]interface{}{"unused_for": "168h"}).Data
	assert.NotContains(t, stale["keys"], "later", "recently used")
	assert.Contains(t, stale["keys"], "never", "never used and older than the threshold")
	young := e.mustOK(logical.ReadOperation, "tenants/acme/report/stale", map[string]interface{}{"unused_for": "720h"}).Data
	assert.Empty(t, young["keys"])
	e.mustFail(logical.ReadOperation, "tenants/acme/report/stale", map[string]interface{}{"unused_for": "0"}, "positive")
}
