// Command middleware-app is a tiny application server protected by API keys
// through verifier/middleware:
//
//	go run ./examples/middleware-app -listen 127.0.0.1:8081 -verifier http://127.0.0.1:8080
//	curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8081/whoami
//	curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8081/workspaces/prod/clusters
//
// /whoami needs any valid key; /workspaces/{ws}/clusters needs clusters:read
// in workspace {ws}.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/vault-apikeys/vault-apikeys/verifier/middleware"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve on")
	verifierURL := flag.String("verifier", "http://127.0.0.1:8080", "base URL of apikeys-verifier")
	flag.Parse()
	srv := &http.Server{Addr: *listen, Handler: newApp(middleware.NewClient(*verifierURL)), ReadHeaderTimeout: 5 * time.Second}
	log.Printf("middleware-app on %s, verifying with %s", *listen, *verifierURL)
	log.Fatal(srv.ListenAndServe())
}

// newApp wires the routes; tests build it against a stand-in verifier.
func newApp(c *middleware.Client) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /whoami", middleware.Middleware(c)(http.HandlerFunc(whoami)))
	clusters := middleware.Middleware(c,
		middleware.RequirePermissions("clusters:read"),
		middleware.WithWorkspace(func(r *http.Request) string { return r.PathValue("ws") }),
	)
	mux.Handle("GET /workspaces/{ws}/clusters", clusters(http.HandlerFunc(listClusters)))
	return mux
}

func whoami(w http.ResponseWriter, r *http.Request) {
	key, _ := middleware.KeyFromContext(r.Context())
	writeJSON(w, map[string]any{"key_id": key.ID, "name": key.Name, "role": key.Role, "workspace": key.Workspace})
}

func listClusters(w http.ResponseWriter, r *http.Request) {
	key, _ := middleware.KeyFromContext(r.Context())
	writeJSON(w, map[string]any{"workspace": r.PathValue("ws"), "clusters": []string{"alpha", "beta"}, "by": key.Name})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
