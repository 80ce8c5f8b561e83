// Command bare is the practical speed limit the verifier is compared with: the
// fastest plausible Go handler that still does the job's essentials. It reads
// the body, takes the key out of the JSON without reflection, does one SHA-256
// and one sync.Map lookup, and writes one of two constant JSON answers. Keys to
// accept are read from -keys.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
)

const maxBody = 16 << 10

var (
	answerValid   = []byte(`{"valid":true,"code":"VALID"}`)
	answerInvalid = []byte(`{"valid":false,"code":"NOT_FOUND"}`)
	answerBad     = []byte(`{"valid":false,"code":"INVALID_FORMAT"}`)
	jsonType      = []string{"application/json"}
	bodies        = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	keysFile := flag.String("keys", "", "file with one accepted key per line")
	flag.Parse()
	var known sync.Map
	if *keysFile != "" {
		f, err := os.Open(*keysFile)
		if err != nil {
			log.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			known.Store(sha256.Sum256(sc.Bytes()), struct{}{})
		}
		f.Close()
	}
	http.HandleFunc("/v1/verify", func(w http.ResponseWriter, r *http.Request) {
		bp := bodies.Get().(*[]byte)
		defer bodies.Put(bp)
		body, err := readBody(r.Body, (*bp)[:0])
		*bp = body[:0]
		w.Header()["Content-Type"] = jsonType
		key, ok := keyField(body)
		if err != nil || !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write(answerBad)
			return
		}
		if _, found := known.Load(sha256.Sum256(key)); found {
			_, _ = w.Write(answerValid)
			return
		}
		_, _ = w.Write(answerInvalid)
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}

// readBody appends r to buf, refusing bodies over maxBody.
func readBody(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxBody {
				return buf, errors.New("body too large")
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// keyField returns the string value of the top-level-looking "key" member. It
// is a scanner, not a JSON parser: enough for the bench's requests, which are
// {"key":"…"} with a key of URL-safe characters (a backslash is refused).
func keyField(body []byte) ([]byte, bool) {
	i := bytes.Index(body, []byte(`"key"`))
	if i < 0 {
		return nil, false
	}
	rest := skipSpace(body[i+len(`"key"`):])
	if len(rest) == 0 || rest[0] != ':' {
		return nil, false
	}
	rest = skipSpace(rest[1:])
	if len(rest) == 0 || rest[0] != '"' {
		return nil, false
	}
	rest = rest[1:]
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return nil, false
	}
	return rest[:end], true
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}
