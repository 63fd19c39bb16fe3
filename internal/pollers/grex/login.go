package grex

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gridstream/gridstream/internal/auth"
)

// maxPasted bounds the pasted redirect URL (B2C codes run to a few thousand characters).
const maxPasted = 64 << 10

// Login runs the interactive G-REX login of `connector login grex`: it prints the authorize URL
// (PKCE S256 challenge and a fresh state) to out, reads the redirect URL the browser ended on,
// or the bare code, from in, checks its state, exchanges the code with the verifier and saves
// the tokens encrypted in opts.TokenStore. It prints when the refresh token expires, never a
// token. Needs AuthorizeURL, TokenURL, ClientID, RedirectURI and TokenStore.
func Login(ctx context.Context, opts Options, in io.Reader, out io.Writer) error {
	return LoginWith(ctx, opts, func(ctx context.Context, authURL string) (string, error) {
		fmt.Fprintf(out, "G-REX login for client %s.\n\n1. Open this URL in a browser and sign in (password and second factor):\n\n   %s\n\n"+
			"2. The browser ends on %s?code=... (the page may be blank).\n   Paste that whole address, or only the code, here and press Enter:\n",
			opts.ClientID, authURL, opts.RedirectURI)
		pasted, err := readLine(ctx, in)
		if err != nil {
			return "", fmt.Errorf("read the redirect URL: %w", err)
		}
		return pasted, nil
	}, out)
}

// LoginWith is Login with approve standing in for the person: it gets the authorize URL and
// returns the redirect URL (or code) the login ended on. `connector demo` passes the sandbox's
// GREX.Approve, so the demo logs in with no one at the keyboard.
func LoginWith(ctx context.Context, opts Options, approve func(ctx context.Context, authURL string) (string, error), out io.Writer) error {
	if err := opts.normalize(); err != nil {
		return err
	}
	if opts.AuthorizeURL == "" {
		return errors.New("grex: AuthorizeURL is required to log in")
	}
	login, err := auth.NewPKCELogin(auth.PKCEConfig{AuthURL: opts.AuthorizeURL, RotatingConfig: opts.rotating()})
	if err != nil {
		return fmt.Errorf("grex login: %w", err)
	}
	pasted, err := approve(ctx, login.AuthURL())
	if err != nil {
		return fmt.Errorf("grex login: %w", err)
	}
	code, err := auth.ParseRedirect(pasted, login.State())
	if err != nil {
		return fmt.Errorf("grex login: %w", err)
	}
	if err := login.Exchange(ctx, code); err != nil {
		return fmt.Errorf("grex login: %w", err)
	}
	st, _, err := opts.TokenStore.Load(ctx, opts.StoreKey)
	if err != nil {
		return fmt.Errorf("grex login: read back the saved tokens: %w", err)
	}
	fmt.Fprintf(out, "\nLogged in. The refresh token is saved encrypted (key %s).\n", opts.StoreKey)
	if st.RefreshExpiry.IsZero() {
		fmt.Fprintln(out, "The registry did not say when it expires; the connector renews it unattended.")
	} else {
		left := st.RefreshExpiry.Sub(opts.Clock.Now()).Round(time.Minute)
		fmt.Fprintf(out, "It expires at %s (in %s) unless the connector renews it before; if it lapses, run this login again.\n",
			st.RefreshExpiry.UTC().Format(time.RFC3339), left)
	}
	return nil
}

// readLine reads one line (or everything up to EOF) from in, bounded, giving up when ctx ends.
func readLine(ctx context.Context, in io.Reader) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := bufio.NewReaderSize(io.LimitReader(in, maxPasted), 4096).ReadString('\n')
		if errors.Is(err, io.EOF) && strings.TrimSpace(s) != "" {
			err = nil
		}
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
