package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/vault-apikeys/vault-apikeys/e2e/history"
)

// vaultAudit is a file audit device on the run's Vault: it shows when each
// verifier's feed poll arrived, the one moment the verifiers' own records
// cannot give (see history.PollBegin).
type vaultAudit struct{ path string }

func enableVaultAudit(ctx context.Context, api *apiClient, path string) (*vaultAudit, error) {
	_, err := api.do(ctx, http.MethodPut, "sys/audit/history", map[string]any{"type": "file", "options": map[string]any{"file_path": path}})
	return &vaultAudit{path: path}, err
}

// auditEntry is the part of a Vault audit entry read here. Tokens in it are
// HMACed by Vault; display names are not secrets.
type auditEntry struct {
	Time  time.Time `json:"time"`
	Type  string    `json:"type"`
	Error string    `json:"error"`
	Auth  struct {
		DisplayName string `json:"display_name"`
	} `json:"auth"`
	Request struct {
		ID        string `json:"id"`
		Path      string `json:"path"`
		Operation string `json:"operation"`
	} `json:"request"`
}

// begins returns the feed polls of every verifier, named by incarnation.
func (a *vaultAudit) begins(mount string, fleet []*fleetVerifier) ([]history.PollBegin, error) {
	f, err := os.Open(a.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	bySlot := map[string]*fleetVerifier{}
	for _, v := range fleet {
		bySlot[v.displayName] = v
	}
	type pending struct {
		begin history.PollBegin
		slot  *fleetVerifier
	}
	reqs := map[string]*pending{}
	var order []*pending
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e auditEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Request.Path != mount+"/changes" {
			continue
		}
		slot := bySlot[e.Auth.DisplayName]
		if slot == nil {
			continue // the recorder's own follower
		}
		switch e.Type {
		case "request":
			p := &pending{begin: history.PollBegin{At: e.Time}, slot: slot}
			reqs[e.Request.ID] = p
			order = append(order, p)
		case "response":
			if p := reqs[e.Request.ID]; p != nil && e.Error == "" {
				p.begin.OK = true
			}
		}
	}
	out := make([]history.PollBegin, 0, len(order))
	for _, p := range order {
		p.begin.Verifier = p.slot.incarnationAt(p.begin.At)
		out = append(out, p.begin)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, sc.Err()
}
