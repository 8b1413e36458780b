package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// tokenHash hashes a token so that the comparison takes the same time
// whatever the length of the guess.
func tokenHash(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// authorized checks the access token, or without one the Host header.
func (c *Console) authorized(r *http.Request) bool {
	if c.opts.Token == "" {
		return c.loopbackHost(r.Host)
	}
	given := ""
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		given = strings.TrimPrefix(auth, "Bearer ")
	} else if _, pw, ok := r.BasicAuth(); ok {
		given = pw
	}
	h := tokenHash(given)
	return subtle.ConstantTimeCompare(h[:], c.token[:]) == 1
}

// loopbackHost reports whether a Host header names this machine's loopback
// or one of Options.Hosts.
func (c *Console) loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") || slices.ContainsFunc(c.opts.Hosts, func(h string) bool { return strings.EqualFold(h, host) }) {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var (
	errReadOnly    = errors.New("the console is read-only")
	errCrossOrigin = errors.New("request from another origin")
	errCSRF        = errors.New("missing or wrong anti-forgery token")
)

// checkPost admits an action: not read-only, from the console's own origin,
// with its anti-forgery token.
func (c *Console) checkPost(r *http.Request) error {
	if c.opts.ReadOnly {
		return errReadOnly
	}
	if err := c.cop.Check(r); err != nil {
		return errCrossOrigin
	}
	// CrossOriginProtection admits a request whose Sec-Fetch-Site says
	// same-origin without looking at Origin; check it too when present.
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return errCrossOrigin
		}
	}
	given := r.Header.Get("X-CSRF-Token")
	if given == "" {
		r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
		given = r.PostFormValue("csrf")
	}
	if subtle.ConstantTimeCompare([]byte(given), []byte(c.csrf)) != 1 {
		return errCSRF
	}
	return nil
}
