package net2grid

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gridstream/gridstream/internal/auth"
	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/secret"
)

func TestUserIDIsStableAndHidesTheAddress(t *testing.T) {
	t.Parallel()
	a, b := UserID("User-0001@Example.test"), UserID("  user-0001@example.test ")
	if a != b || !IsUserID(a) || strings.Contains(a, "user") {
		t.Fatalf("UserID: %q %q", a, b)
	}
	if UserID("user-0002@example.test") == a {
		t.Fatal("two users share an id")
	}
}

func newRegistry(t *testing.T) *Registry {
	t.Helper()
	srv := natstest.Run(t)
	reg, err := OpenRegistry(context.Background(), srv.JS, "", publish.KVConfig{Storage: "memory"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestRegistryAddRemoveList(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ctx := context.Background()
	u1, err := reg.Add(ctx, "a@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := reg.Add(ctx, "A@example.test"); err != nil || again.ID != u1.ID || !again.AddedAt.Equal(u1.AddedAt) {
		t.Fatalf("adding twice: %+v %v", again, err)
	}
	if _, err := reg.Add(ctx, "b@example.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Add(ctx, "not an address"); !errors.Is(err, ErrBadEmail) {
		t.Fatalf("bad address: %v", err)
	}
	list, err := reg.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
	// Removing a user forgets its refresh token too; other users keep theirs.
	tokens := auth.NewMemoryStore()
	for _, a := range []string{"a@example.test", "b@example.test"} {
		if _, err := tokens.Save(ctx, storeKey(UserID(a)), auth.Stored{RefreshToken: secret.New("rt-" + a)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveUser(ctx, tokens, reg, "a@example.test"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tokens.Load(ctx, storeKey(UserID("a@example.test"))); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("removed user's token: %v, want it gone", err)
	}
	if _, _, err := tokens.Load(ctx, storeKey(UserID("b@example.test"))); err != nil {
		t.Errorf("other user's token: %v", err)
	}
	if _, err := reg.Remove(ctx, UserID("b@example.test")); err != nil {
		t.Fatal(err)
	}
	if err := RemoveUser(ctx, tokens, reg, "a@example.test"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("removing twice: %v", err)
	}
	if list, err := reg.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("list after removal: %v %v", list, err)
	}
}

func TestRegistryStoresNoAddress(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ctx := context.Background()
	if _, err := reg.Add(ctx, "secret.person@example.test"); err != nil {
		t.Fatal(err)
	}
	keys, err := reg.kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		e, err := reg.kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(k+string(e.Value()), "@") || strings.Contains(string(e.Value()), "person") {
			t.Fatalf("address in the registry: %s = %s", k, e.Value())
		}
	}
}

func TestReadUserFile(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		n        int
		pws      []string
		wantErr  string
	}{
		{"addresses only", "a@example.test\nb@example.test\n", 2, []string{"", ""}, ""},
		{"comments and blanks", "# users\n\n a@example.test \n", 1, []string{""}, ""},
		{"comma password", "a@example.test,pa,ss\n", 1, []string{"pa,ss"}, ""},
		{"tab password", "a@example.test\tp w\n", 1, []string{"p w"}, ""},
		{"bad address", "a@example.test\nnobody\n", 0, nil, "line 2"},
		{"listed twice", "a@example.test\nA@example.test\n", 0, nil, "line 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ReadUserFile(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "nobody") {
					t.Fatalf("error %v, want one naming %q and not the content", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != tc.n {
				t.Fatalf("%v %v", got, err)
			}
			for i, e := range got {
				if e.Password.Reveal() != tc.pws[i] {
					t.Fatalf("entry %d password %q, want %q", i, e.Password.Reveal(), tc.pws[i])
				}
			}
		})
	}
}
