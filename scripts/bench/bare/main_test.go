package main

import (
	"strings"
	"testing"
)

func TestKeyField(t *testing.T) {
	for body, want := range map[string]string{
		`{"key":"vak_abc_123"}`:                          "vak_abc_123",
		`{ "key" : "vak_abc" , "workspace":"prod"}`:      "vak_abc",
		`{"workspace":"prod","key":"k1","client_ip":""}`: "k1",
		`{"key":""}`: "",
	} {
		got, ok := keyField([]byte(body))
		if !ok || string(got) != want {
			t.Errorf("keyField(%s) = %q, %v; want %q", body, got, ok, want)
		}
	}
	for _, body := range []string{``, `{}`, `{"key":1}`, `{"key":"a\"b"}`, `{"key":"unterminated`, `{"key"}`} {
		if got, ok := keyField([]byte(body)); ok {
			t.Errorf("keyField(%s) = %q, want refusal", body, got)
		}
	}
}

func TestReadBodyBounded(t *testing.T) {
	got, err := readBody(strings.NewReader(strings.Repeat("x", 3000)), make([]byte, 0, 16))
	if err != nil || len(got) != 3000 {
		t.Fatalf("read %d bytes, %v; want 3000", len(got), err)
	}
	if _, err := readBody(strings.NewReader(strings.Repeat("x", maxBody+1)), nil); err == nil {
		t.Fatal("a body over maxBody was accepted")
	}
}
