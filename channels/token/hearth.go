package token

import (
	"context"
	"errors"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// ConnectOptions configures Connect.
type ConnectOptions struct {
	// Param is the query parameter that may carry the token when the
	// client does not use the Phoenix bearer form. Zero means "token".
	Param string
	// Optional lets sockets without a token connect anonymously (they get
	// nil claims and no refresh). A token that is present must be valid.
	Optional bool
	// ID derives the socket id (see channels.ConnectReply.ID) from the
	// claims. Nil means the subject.
	ID func(*Claims) string
	// Session, when set, re-checks the session behind a valid token at
	// connect, as Mint does at every refresh. A session that ended
	// (channels.ErrRevoked) gets close 4503 "session revoked": a client
	// that still holds a token from before a logout (phoenix.js reconnects
	// with it after the revocation) is refused at once, instead of
	// connecting again until the next refresh revokes it. Any other error
	// gets 1013 "try again later" (the server answers 503 to clients that
	// cannot read close codes). Nil means the token alone decides.
	Session SessionCheck
}

// Connect returns a channels.ConnectFunc that authenticates sockets by
// token, from the Phoenix bearer subprotocol or the query. A missing or
// invalid token gets close 4501 "unauthorized", an expired one 4502 "token
// expired" (and, with ConnectOptions.Session, an ended session 4503
// "session revoked"): terminal answers the Hearth client reads, so it stops
// retrying instead of looping. Package server answers them with HTTP 403
// before the upgrade to clients that cannot read close codes (phoenix.js),
// so that their backoff holds. The socket's Assigns are its *Claims and its
// credentials expire with the token (so RefreshOptions applies).
func Connect(v Verifier, opts ConnectOptions) channels.ConnectFunc {
	if opts.Param == "" {
		opts.Param = "token"
	}
	return func(ctx context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
		tok := ev.Token
		if tok == "" {
			tok = ev.Params.Get(opts.Param)
		}
		if tok == "" {
			if opts.Optional {
				return channels.ConnectReply{}, nil
			}
			return channels.ConnectReply{}, &channels.CloseError{Code: channels.CloseUnauthorized, Reason: "unauthorized"}
		}
		c, err := v.Verify(ctx, tok)
		switch {
		case errors.Is(err, ErrExpired):
			return channels.ConnectReply{}, &channels.CloseError{Code: channels.CloseTokenExpired, Reason: "token expired"}
		case err != nil:
			return channels.ConnectReply{}, &channels.CloseError{Code: channels.CloseUnauthorized, Reason: "unauthorized"}
		}
		if opts.Session != nil {
			if err := opts.Session(ctx, c); errors.Is(err, channels.ErrRevoked) {
				return channels.ConnectReply{}, &channels.CloseError{Code: channels.CloseRevoked, Reason: "session revoked"}
			} else if err != nil {
				return channels.ConnectReply{}, &channels.CloseError{Code: channels.CloseTryAgainLater, Reason: "try again later"}
			}
		}
		id := c.Subject
		if opts.ID != nil {
			id = opts.ID(c)
		}
		return channels.ConnectReply{ID: id, Assigns: c, ExpiresAt: c.Expiry()}, nil
	}
}

// FromSocket returns the claims Connect stored in a socket's assigns, or
// nil for an anonymous socket.
func FromSocket(s *channels.Socket) *Claims {
	c, _ := s.Assigns().(*Claims)
	return c
}

// SessionCheck reports whether the session behind a token is still valid.
// It returns channels.ErrRevoked (or any error wrapping it) when the
// session ended, and another error when it could not tell (the refresh is
// then retried).
type SessionCheck func(ctx context.Context, c *Claims) error

// Mint returns a channels.RefreshOptions.Mint that re-checks the socket's
// session with check and then signs a fresh token with the same subject,
// session and channels, valid for ttl.
func Mint(k *Keyring, ttl time.Duration, check SessionCheck) func(context.Context, *channels.Socket) (string, time.Time, error) {
	return func(ctx context.Context, s *channels.Socket) (string, time.Time, error) {
		old := FromSocket(s)
		if old == nil {
			return "", time.Time{}, channels.ErrRevoked
		}
		if err := check(ctx, old); err != nil {
			return "", time.Time{}, err
		}
		next := Claims{Session: old.Session, Channels: old.Channels}
		next.Subject = old.Subject
		now := time.Now()
		exp := ceilSecond(now.Add(ttl))
		next.IssuedAt, next.ExpiresAt = jwtDate(now), jwtDate(exp)
		tok, err := k.Sign(next)
		return tok, exp, err
	}
}
