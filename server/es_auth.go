package server

import (
	"encoding/base64"
	"net/http"
	"strings"
)

// maxCredentialBytes bounds the Authorization header value we decode. A
// token is 44 bytes; base64 of "name:token" with a long name stays far
// below this, and anything longer is refused before any work is done.
const maxCredentialBytes = 1024

// authChallenge is sent with every 401: Bearer for trailguard's own
// clients, Basic so that shippers which only know user/password (and wait
// for a challenge before sending them) try again with credentials.
var authChallenge = []string{`Bearer realm="trailguard"`, `Basic realm="trailguard", charset="UTF-8"`}

// presentedToken returns the API token a request presents, in any of the
// forms shippers can be configured to send:
//
//	Authorization: Bearer <token>
//	Authorization: ApiKey <token>                 the raw token
//	Authorization: ApiKey base64(<id>:<token>)    Elasticsearch's API key form
//	Authorization: Basic base64(<user>:<token>)   for user/password-only shippers
//
// The id or user part is not checked: the token alone authenticates, and
// shippers may put the token's name (or anything) there. ok is false when
// no credential in a known scheme is present; a present but malformed one
// is returned as is, so that it fails the token check and is counted.
func presentedToken(r *http.Request) (token string, ok bool) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, value, found := strings.Cut(h, " ")
	if !found || len(value) > maxCredentialBytes {
		return "", false
	}
	value = strings.TrimSpace(value)
	if value == "" {
		return "", false
	}
	switch strings.ToLower(scheme) {
	case "bearer":
		return value, true
	case "apikey":
		if strings.HasPrefix(value, "tg_") {
			return value, true
		}
		if _, key, ok := decodePair(value); ok {
			return key, true
		}
		return value, true
	case "basic":
		_, pass, ok := decodePair(value)
		if !ok {
			return "", true // present but undecodable: fails the check, and counts
		}
		return pass, true
	}
	return "", false
}

// decodePair decodes base64("<a>:<b>"), padded or not.
func decodePair(s string) (string, string, bool) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return "", "", false
		}
	}
	a, b, ok := strings.Cut(string(raw), ":")
	return a, b, ok
}
