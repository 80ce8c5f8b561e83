// Command bare is the practical speed limit the verifier is compared with: a
// plain net/http handler that decodes the same request, does one SHA-256 and
// one map lookup, and answers JSON. Keys to accept are read from -keys.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	keysFile := flag.String("keys", "", "file with one accepted key per line")
	flag.Parse()
	known := map[[32]byte]bool{}
	if *keysFile != "" {
		f, err := os.Open(*keysFile)
		if err != nil {
			log.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			known[sha256.Sum256(sc.Bytes())] = true
		}
		f.Close()
	}
	http.HandleFunc("/v1/verify", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Key string `json:"key"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		valid := known[sha256.Sum256([]byte(req.Key))]
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]interface{}{"valid": valid})
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
