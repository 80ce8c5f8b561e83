package verifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// Handler serves the verifier's HTTP API:
//
//	POST /v1/verify    decide a JSON request (DESIGN §6)
//	*    /v1/auth[/…]  forward-auth for nginx, Caddy, Traefik, Envoy ext_authz
//	GET  /healthz      the process serves
//	GET  /readyz       it can decide (503 otherwise)
//	GET  /metrics      Prometheus
func (v *Verifier) Handler() http.Handler { return v.handler(true) }

// MetricsHandler serves only GET /metrics, for a listener of its own.
func (v *Verifier) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", v.promHandler())
	return mux
}

func (v *Verifier) promHandler() http.Handler {
	return promhttp.HandlerFor(v.metrics.reg, promhttp.HandlerOpts{})
}

// handler is the API, with /metrics unless that has a listener of its own.
func (v *Verifier) handler(withMetrics bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+verdict.PathVerify, v.serveVerify)
	// Any method: proxies forward the original one. Envoy ext_authz appends the
	// original path: /v1/auth/<path>.
	mux.HandleFunc(verdict.PathAuth, v.serveAuth)
	mux.HandleFunc(verdict.PathAuth+"/", v.serveAuth)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", v.serveReady)
	if withMetrics {
		mux.Handle("GET /metrics", v.promHandler())
	}
	return mux
}

// errBadRequest marks request errors answered 400.
var errBadRequest = errors.New("bad request")

// decodeVerifyRequest parses a body: one JSON object with a key, nothing after it.
// Its errors never quote the body (which holds a token).
func decodeVerifyRequest(body []byte) (verdict.VerifyRequest, error) {
	req, ok := decodeVerifyFast(body)
	if !ok {
		req = verdict.VerifyRequest{}
		if err := decodeVerifyJSON(body, &req); err != nil {
			return req, err
		}
	}
	if req.Key == "" {
		return req, fmt.Errorf("%w: \"key\" is missing", errBadRequest)
	}
	return req, nil
}

// decodeVerifyJSON is encoding/json's reading of a verify body: the one that
// decides whenever the body is outside decodeVerifyFast's shape.
func decodeVerifyJSON(body []byte, req *verdict.VerifyRequest) error {
	// Unmarshal also rejects anything after the object but white space.
	if err := json.Unmarshal(body, req); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) && syntax.Offset > 0 && json.Valid(body[:syntax.Offset-1]) {
			return fmt.Errorf("%w: body has data after the JSON object", errBadRequest)
		}
		return fmt.Errorf("%w: body is not a JSON object of the form {\"key\": \"…\", \"tenant\": \"…\", \"workspace\": \"…\", \"permissions\": […], \"client_ip\": \"…\"}", errBadRequest)
	}
	return nil
}

func (v *Verifier) serveVerify(w http.ResponseWriter, r *http.Request) {
	start := v.now()
	rid := requestID(w, r)
	buf := getBuf()
	defer putBuf(buf)
	body, err := readBody(w, r, *buf)
	*buf = body[:0]
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("body is over %d bytes", MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "cannot read the body")
		return
	}
	in, err := decodeVerifyRequest(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	req := Request{Key: in.Key, Tenant: in.Tenant, Workspace: in.Workspace, Permissions: in.Permissions}
	if in.ClientIP != "" {
		if req.ClientIP, err = netip.ParseAddr(in.ClientIP); err != nil {
			writeError(w, http.StatusBadRequest, "\"client_ip\" is not an IP address")
			return
		}
	} else {
		req.ClientIP = v.clientAddr(r)
	}
	ans, err := v.Check(r.Context(), req)
	v.recordDecision(endpointVerify, rid, &req, ans, err, start)
	if err != nil {
		v.unavailable(w, endpointVerify, rid, err)
		return
	}
	writeVerifyAnswer(w, &ans)
}

// writeVerifyAnswer renders a decided answer of POST /v1/verify: always 200.
func writeVerifyAnswer(w http.ResponseWriter, ans *Verdict) {
	resp := verdict.VerifyResponse{
		Valid: ans.Valid(), Code: ans.Code, KeyID: ans.KeyID, Tenant: ans.Tenant, Name: ans.Name,
		Role: ans.Role, Workspace: ans.Workspace, Permissions: nonNil(ans.Permissions),
		ExpiresAt: ans.ExpiresAt, Metadata: ans.Metadata,
	}
	out := getBuf()
	*out = appendVerifyResponse(*out, &resp)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(*out)
	putBuf(out)
}

// Shared header values: set without the allocations of Header.Set.
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// readBody reads the request body into buf (reused across requests), up to
// MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, error) {
	b := bytes.NewBuffer(buf)
	_, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	return b.Bytes(), err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (v *Verifier) serveReady(w http.ResponseWriter, _ *http.Request) {
	st := v.Status()
	code := http.StatusOK
	if !st.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, st)
}

// recordDecision writes a decision's audit line and observes its latency. The
// latency observed is taken after the audit line is written, so it includes
// an audit write that stalled (the line's own latency_ms cannot).
func (v *Verifier) recordDecision(endpoint, rid string, req *Request, ans Verdict, err error, start time.Time) {
	v.logDecision(endpoint, rid, req, ans, err, start)
	v.metrics.observe(endpoint, ans.Code, err, v.now().Sub(start))
}

// logDecision writes the audit line of one answer (UNAVAILABLE for a 503).
func (v *Verifier) logDecision(endpoint, rid string, req *Request, ans Verdict, err error, start time.Time) {
	if v.audit == nil {
		return
	}
	code := string(ans.Code)
	if err != nil {
		code = "UNAVAILABLE"
	}
	line := auditLine{
		Time: start.UTC(), RequestID: rid, Endpoint: endpoint, KeyID: ans.KeyID, Tenant: auditTenant(req, &ans), Name: ans.Name,
		Code: code, Workspace: req.Workspace, LatencyMS: float64(v.now().Sub(start).Microseconds()) / 1000,
		FeedSeq: ans.FeedSeq,
	}
	if req.ClientIP.IsValid() {
		line.ClientIP = req.ClientIP.String()
	}
	if err := v.audit.Log(&line); err != nil {
		v.log.Error("cannot write audit line", "error", err)
	}
}

// auditTenant is the tenant a decision was for: the pinned one when the
// request pinned one (a TENANT_MISMATCH is logged as that tenant's refusal),
// else the key's when the answer describes the key.
func auditTenant(req *Request, ans *Verdict) string {
	if req.Tenant != "" {
		return req.Tenant
	}
	return ans.Tenant
}

// requestID takes a caller's X-Request-Id when it is tame, or makes one, and
// echoes it in the response.
func requestID(w http.ResponseWriter, r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	if !tameID(id) {
		id = strconv.FormatUint(rand.Uint64(), 16)
	}
	w.Header().Set("X-Request-Id", id)
	return id
}

func tameID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// writeError answers an error: msg is ours, never the caller's input nor
// anything from Vault.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, verdict.ErrorResponse{Error: msg})
}

// unavailable answers 503 with a fixed body: err may hold Vault addresses and
// Vault's own error text, which go to the log only (DESIGN §6). Their causes
// are logged where they happen (feed, lookup), so this line is for debugging.
func (v *Verifier) unavailable(w http.ResponseWriter, endpoint, rid string, err error) {
	v.log.Debug("cannot decide: answering 503", "endpoint", endpoint, "request_id", rid, "error", err)
	writeError(w, http.StatusServiceUnavailable, verdict.UnavailableMessage)
}
