package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/secret"
)

func TestStoreCompareAndSwap(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) Store{
		"memory": func(*testing.T) Store { return NewMemoryStore() },
		"kv":     func(t *testing.T) Store { return newKVStore(t, natstest.Run(t), testKey()) },
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := mk(t)
			key := StoreKey("grex", "operator")
			if _, _, err := s.Load(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Fatalf("load of a missing key: %v, want ErrNotFound", err)
			}
			if _, err := s.Save(ctx, key, Stored{}, 7); !errors.Is(err, ErrConflict) {
				t.Fatalf("update of a missing key: %v, want ErrConflict", err)
			}
			want := Stored{
				RefreshToken: secret.New("rt-one-xxxxxxxx"), RefreshExpiry: time.Unix(2000, 0).UTC(),
				AccessToken: secret.New("at-one-xxxxxxxx"), AccessExpiry: time.Unix(1000, 0).UTC(),
				TokenType: "Bearer", UpdatedAt: time.Unix(900, 0).UTC(),
			}
			rev, err := s.Save(ctx, key, want, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Save(ctx, key, want, 0); !errors.Is(err, ErrConflict) {
				t.Fatalf("second create: %v, want ErrConflict", err)
			}
			got, gotRev, err := s.Load(ctx, key)
			if err != nil || gotRev != rev {
				t.Fatalf("load: rev %d err %v, want rev %d", gotRev, err, rev)
			}
			if got.RefreshToken.Reveal() != want.RefreshToken.Reveal() || got.AccessToken.Reveal() != want.AccessToken.Reveal() ||
				!got.RefreshExpiry.Equal(want.RefreshExpiry) || !got.AccessExpiry.Equal(want.AccessExpiry) ||
				got.TokenType != want.TokenType || !got.UpdatedAt.Equal(want.UpdatedAt) {
				t.Fatalf("round trip changed the tokens: %+v", got)
			}
			rev2, err := s.Save(ctx, key, Stored{RefreshToken: secret.New("rt-two-xxxxxxxx")}, rev)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Save(ctx, key, want, rev); !errors.Is(err, ErrConflict) {
				t.Fatalf("save at a stale revision: %v, want ErrConflict", err)
			}
			if got, r, _ := s.Load(ctx, key); r != rev2 || got.RefreshToken.Reveal() != "rt-two-xxxxxxxx" {
				t.Fatalf("stale save changed the store")
			}
		})
	}
}

func TestStoreKeyHasNoUserID(t *testing.T) {
	t.Parallel()
	for _, user := range []string{alice, "Bob.Smith+tag@example.org", "u-42", "héllo wörld", ""} {
		key := StoreKey("NET2GRID", user)
		if err := checkKey(key); err != nil {
			t.Errorf("StoreKey(%q) = %q is not a valid KV key", user, key)
		}
		if user != "" && strings.Contains(strings.ToLower(key), strings.ToLower(strings.Split(user, "@")[0])) {
			t.Errorf("StoreKey(%q) = %q contains the user id", user, key)
		}
		if strings.Contains(key, "@") || !strings.HasPrefix(key, "net2grid.u") {
			t.Errorf("StoreKey(%q) = %q", user, key)
		}
	}
	if first, again := StoreKey("grex", "a"), StoreKey("grex", "a"); first == StoreKey("grex", "b") || first != again {
		t.Error("StoreKey is not a stable, distinct label")
	}
	if err := checkKey(alice); err == nil {
		t.Error("an e-mail address passed as a key was accepted")
	}
}

func TestKVValuesAreEncrypted(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := natstest.Run(t)
	store := newKVStore(t, s, testKey())
	key := StoreKey("net2grid", alice)
	st := Stored{RefreshToken: secret.New("rt-plaintext-canary"), AccessToken: secret.New("at-plaintext-canary"), TokenType: "Bearer"}
	if _, err := store.Save(ctx, key, st, 0); err != nil {
		t.Fatal(err)
	}
	kv, err := s.JS.KeyValue(ctx, DefaultTokenBucket)
	if err != nil {
		t.Fatal(err)
	}
	status, err := kv.Status(ctx)
	if err != nil || status.History() < 2 {
		t.Fatalf("bucket history %v, err %v: want >= 2", status, err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, "alice") || strings.Contains(k, "example") {
			t.Errorf("KV key %q holds the user id", k)
		}
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	raw := string(e.Value())
	for _, plain := range []string{"canary", "Bearer", "refresh_token"} {
		if strings.Contains(raw, plain) {
			t.Errorf("stored value holds plaintext %q: %s", plain, raw)
		}
	}
	if !strings.Contains(raw, `"kid"`) || !strings.Contains(raw, `"v":1`) {
		t.Errorf("envelope lacks key id or version: %s", raw)
	}

	// A value moved to another key does not open (the key is authenticated data).
	other := StoreKey("net2grid", "mallory")
	if _, err := kv.Create(ctx, other, e.Value()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Load(ctx, other); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("moved value: %v, want ErrDecrypt", err)
	}
}

func TestWrongEncryptionKeyNeverOverwritesTokens(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := natstest.Run(t)
	ts := newTokenServer(t)
	clk := newFakeClock()
	var logs logBuffer
	right := newKVStore(t, s, testKey())
	cfg := rotatingConfig(ts, right, clk, &logs)
	bootstrap(t, ts, cfg)
	before, beforeRev, err := right.Load(ctx, cfg.Key)
	if err != nil {
		t.Fatal(err)
	}

	wrong := newKVStore(t, s, testKey())
	_, rev, err := wrong.Load(ctx, cfg.Key)
	if !errors.Is(err, ErrDecrypt) || rev != 0 {
		t.Fatalf("load with the wrong key: rev %d, %v; want ErrDecrypt and revision 0", rev, err)
	}
	if !strings.Contains(err.Error(), "key id") {
		t.Errorf("wrong-key error does not name the key ids: %v", err)
	}

	wcfg := rotatingConfig(ts, wrong, clk, &logs)
	src := newRotating(t, wcfg)
	if _, err := src.Token(ctx); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("token with the wrong key: %v, want ErrDecrypt", err)
	}
	if h := src.Health(); h.State != StateError || !strings.Contains(h.LastError, "decrypt") {
		t.Fatalf("health with the wrong key: %+v", h)
	}
	if err := BootstrapPassword(ctx, wcfg, alice, secret.New(ts.users[alice]), wrong, wcfg.Key); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("login over undecryptable tokens: %v, want ErrDecrypt", err)
	}

	after, afterRev, err := right.Load(ctx, cfg.Key)
	if err != nil || afterRev != beforeRev || after.RefreshToken.Reveal() != before.RefreshToken.Reveal() {
		t.Fatalf("the stored tokens changed: rev %d→%d, err %v", beforeRev, afterRev, err)
	}
	if _, err := newRotating(t, cfg).Token(ctx); err != nil {
		t.Fatalf("the right key no longer works: %v", err)
	}
}

func TestParseEncryptionKey(t *testing.T) {
	t.Parallel()
	raw := []byte("0123456789abcdef0123456789abcdef")
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"hex", "3031323334353637383961626364656630313233343536373839616263646566", true},
		{"base64", base64.StdEncoding.EncodeToString(raw), true},
		{"base64 raw url", base64.RawURLEncoding.EncodeToString(raw), true},
		{"padded with spaces", "  " + base64.StdEncoding.EncodeToString(raw) + "\n", true},
		{"too short", base64.StdEncoding.EncodeToString(raw[:16]), false},
		{"not a key", "correct horse battery staple", false},
		{"empty", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := ParseEncryptionKey(secret.New(tc.in))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && string(k) != string(raw) {
				t.Fatalf("decoded %x", k)
			}
			if err != nil && tc.in != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}

func TestKVStoreOpensExistingBucket(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := natstest.Run(t)
	if _, err := s.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "tokens_b", History: 3}); err != nil {
		t.Fatal(err)
	}
	// A second connection, as a second replica would have.
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	key := testKey()
	a, err := NewKVStore(ctx, s.JS, KVConfig{Bucket: "tokens_b", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKVStore(ctx, js, KVConfig{Bucket: "tokens_b", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := a.Save(ctx, "grex.x", Stored{RefreshToken: secret.New("rt-shared-xxxx")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, r, err := b.Load(context.Background(), "grex.x")
	if err != nil || r != rev || got.RefreshToken.Reveal() != "rt-shared-xxxx" {
		t.Fatalf("second replica read rev %d err %v", r, err)
	}
	if _, err := NewKVStore(ctx, s.JS, KVConfig{Bucket: "tokens_c", Key: key, History: 1}); err == nil {
		t.Fatal("history 1 accepted")
	}
}

// TestDeletePurgesEveryRevision: a removed user's tokens leave the bucket, older
// revisions included (the bucket keeps history for rotation), and deleting twice is fine.
func TestDeletePurgesEveryRevision(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := natstest.Run(t)
	store := newKVStore(t, s, testKey())
	key := StoreKey("net2grid", alice)
	rev, err := store.Save(ctx, key, Stored{RefreshToken: secret.New("rt-1")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Save(ctx, key, Stored{RefreshToken: secret.New("rt-2")}, rev); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := store.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := store.Load(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("load after delete: %v, want ErrNotFound", err)
	}
	kv, err := s.JS.KeyValue(ctx, DefaultTokenBucket)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := kv.History(ctx, key)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal(err)
	}
	for _, e := range hist {
		if len(e.Value()) > 0 {
			t.Errorf("revision %d still holds a value after delete", e.Revision())
		}
	}
}
