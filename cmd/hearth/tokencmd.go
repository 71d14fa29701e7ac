package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

func init() {
	register("token", "mint a token for a user of the demo: hearth token USER", func(args []string) error {
		return runToken(args, os.Stdout, os.Stderr)
	})
}

// runToken mints a token as the demo's GET /token does, without a session
// cookie, for scripts and tests (as `centrifugo gentoken` does): the token
// alone on stdout, its expiry on stderr.
func runToken(args []string, out, info io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	secret := fs.String("secret", "", "the secret of the demo nodes (default $HEARTH_SECRET, else the one kept in the user cache dir, as hearth serve)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: hearth token USER [flags]

Prints a token for USER, signed as `+"`hearth serve`"+` signs them (same secret),
for scripts and tests: connect with it as the demo page does,

    TOKEN=$(hearth token ada)
    new Socket("ws://127.0.0.1:4000/socket", { authToken: TOKEN })

and the socket is ada's: it may join private:ada. The server refreshes it
over the socket like any other (the token carries its own session, which no
logout ends).

flags:
`)
		fs.PrintDefaults()
	}
	user, err := oneArg(fs, args, "USER")
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	user = strings.TrimSpace(user)
	if user == "" || len(user) > 32 {
		return errors.New("USER must be 1 to 32 characters, as at the demo's /login")
	}
	if *ttl < time.Second {
		return errors.New("--ttl must be at least 1s")
	}
	if *secret == "" {
		*secret = os.Getenv("HEARTH_SECRET")
	}
	key, from, err := demoSecret(*secret)
	if err != nil {
		return err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	auth := newDemoAuth(key, *ttl, [2]float64{0.5, 0.9})
	tok, exp, err := auth.keys.Issue(user, "cli-"+hex.EncodeToString(b[:]), *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, tok)
	fmt.Fprintf(info, "token for %s, valid until %s, signed with the secret from %s\n", user, exp.UTC().Format(time.RFC3339), from)
	return nil
}
