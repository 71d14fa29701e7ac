// Package token signs and verifies the tokens Hearth sockets authenticate
// with, and plugs them into a channels.Node: authentication at connect
// ([Connect]), refresh over the live connection ([Mint]), and channel
// claims checked per join ([Claims.Allows]).
//
// Tokens are JWTs (github.com/golang-jwt/jwt/v5), HS256 by default. A
// [Keyring] holds several keys by key id ("kid"), so keys can rotate: sign
// with the newest, verify with any that is still listed. Applications that
// bring their own tokens implement [Verifier] instead.
package token

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of a Hearth token.
type Claims struct {
	jwt.RegisteredClaims
	// Session names the web session the token was minted for, so that a
	// refresh can check the session is still alive.
	Session string `json:"sid,omitempty"`
	// Channels, when not empty, restricts the topics the token may join:
	// exact topics or patterns ending in '*' ("room:*").
	Channels []string `json:"chn,omitempty"`
}

// Allows reports whether the claims allow joining topic: always when
// Channels is empty, else when a pattern matches.
func (c *Claims) Allows(topic string) bool {
	if len(c.Channels) == 0 {
		return true
	}
	for _, p := range c.Channels {
		if p == topic {
			return true
		}
		if ok, _ := path.Match(p, topic); ok && len(p) > 0 && p[len(p)-1] == '*' {
			return true
		}
	}
	return false
}

// Expiry returns the expiry time (zero if the token has none).
func (c *Claims) Expiry() time.Time {
	if c.ExpiresAt == nil {
		return time.Time{}
	}
	return c.ExpiresAt.Time
}

// Errors of Verify.
var (
	// ErrExpired means the token was valid but has expired.
	ErrExpired = errors.New("token: expired")
	// ErrInvalid means the token is malformed, badly signed, signed with an
	// unknown key, or not valid yet.
	ErrInvalid = errors.New("token: invalid")
)

// Verifier checks a token and returns its claims. It returns an error
// wrapping ErrExpired or ErrInvalid for tokens it refuses.
type Verifier interface {
	Verify(ctx context.Context, token string) (*Claims, error)
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, token string) (*Claims, error)

// Verify implements Verifier.
func (f VerifierFunc) Verify(ctx context.Context, token string) (*Claims, error) {
	return f(ctx, token)
}

type key struct {
	method jwt.SigningMethod
	sign   any // private or shared key; nil for verify-only keys
	verify any // public or shared key
}

// Keyring signs with its current key and verifies with any of its keys,
// chosen by the token's "kid" header. It is safe for concurrent use.
type Keyring struct {
	mu      sync.RWMutex
	keys    map[string]key
	current string
	leeway  time.Duration
}

// NewHS256 returns a keyring with one HMAC-SHA256 key. The key should be at
// least 32 random bytes.
func NewHS256(kid string, secret []byte) *Keyring {
	k := &Keyring{keys: make(map[string]key), leeway: 5 * time.Second}
	k.AddHMAC(kid, secret)
	return k
}

// AddHMAC adds an HS256 key and makes it the signing key.
func (k *Keyring) AddHMAC(kid string, secret []byte) {
	if len(secret) < 16 {
		panic("token: HMAC key shorter than 16 bytes")
	}
	k.add(kid, key{method: jwt.SigningMethodHS256, sign: secret, verify: secret}, true)
}

// AddSigner adds an asymmetric key (RS256, ES256, EdDSA, ...) and makes it
// the signing key. signer is the private key (*rsa.PrivateKey,
// *ecdsa.PrivateKey, ed25519.PrivateKey) matching method.
func (k *Keyring) AddSigner(kid string, method jwt.SigningMethod, signer crypto.Signer) {
	k.add(kid, key{method: method, sign: signer, verify: signer.Public()}, true)
}

// AddVerifier adds a key that only verifies: a key being rotated out, or
// the public key of a token service that signs elsewhere.
func (k *Keyring) AddVerifier(kid string, method jwt.SigningMethod, public any) {
	k.add(kid, key{method: method, verify: public}, false)
}

// Remove drops a key: tokens signed with it no longer verify.
func (k *Keyring) Remove(kid string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, kid)
	if k.current == kid {
		k.current = ""
	}
}

func (k *Keyring) add(kid string, v key, current bool) {
	if kid == "" {
		panic("token: empty key id")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[string]key)
	}
	k.keys[kid] = v
	if current {
		k.current = kid
	}
}

// Sign signs claims with the current key. IssuedAt is set when missing.
func (k *Keyring) Sign(c Claims) (string, error) {
	k.mu.RLock()
	kid := k.current
	v, ok := k.keys[kid]
	k.mu.RUnlock()
	if !ok || v.sign == nil {
		return "", errors.New("token: no signing key")
	}
	if c.IssuedAt == nil {
		c.IssuedAt = jwt.NewNumericDate(time.Now())
	}
	t := jwt.NewWithClaims(v.method, &c)
	t.Header["kid"] = kid
	s, err := t.SignedString(v.sign)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return s, nil
}

// Issue signs a token for subject and session that expires after ttl.
func (k *Keyring) Issue(subject, session string, ttl time.Duration) (string, time.Time, error) {
	now := time.Now()
	exp := ceilSecond(now.Add(ttl))
	tok, err := k.Sign(Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: subject, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp)},
		Session:          session,
	})
	return tok, exp, err
}

// Verify implements Verifier.
func (k *Keyring) Verify(_ context.Context, tok string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(tok, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k.mu.RLock()
		v, ok := k.keys[kid]
		k.mu.RUnlock()
		if !ok {
			return nil, errors.New("unknown key id")
		}
		if t.Method.Alg() != v.method.Alg() {
			return nil, errors.New("algorithm does not match the key")
		}
		return v.verify, nil
	}, jwt.WithLeeway(k.leeway), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	switch {
	case err == nil:
		return &c, nil
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %v", ErrExpired, err)
	default:
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
}

func jwtDate(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }

// ceilSecond rounds up to a whole second: JWT times have second precision,
// and rounding down could hand out a token that is already expired.
func ceilSecond(t time.Time) time.Time {
	r := t.Truncate(time.Second)
	if r.Before(t) {
		r = r.Add(time.Second)
	}
	return r
}
