// Package redact scrubs secrets out of audit data before anything reaches a
// sink, the ledger or the index. Every byte trailguard writes to disk has
// passed through a [Redactor] first.
//
// # What is scrubbed
//
// Named values. The value of a sensitive key is replaced whatever its type:
// a JSON member (string, number, boolean, object or array; null is kept
// because it carries nothing), a query or form parameter, a structured
// attribute, or a header. Names are compared after normalisation — ASCII
// lowercase with '_', '-', '.' and space removed — so "Access-Token",
// "access_token" and "accessToken" are one name. The built-in rule
// (see [Redactor.SensitiveKey]) matches whole names such as "auth",
// "session", "pin" or "ssn", the words "password", "secret", "apikey",
// "privatekey", "credential" and "cardnumber" anywhere in a name, and names
// ending in "token", "pwd", "cookie", "sessionid", "signature", "otp",
// "cvv" or "ssn" (and "access_tokens", "api_tokens" and the like). So "new_password", "password_confirmation",
// "client_secret" and "x-csrf-token" are sensitive, while "tokens_used",
// "token_type", "max_tokens" and "author" are not. A JSON key written with
// dots is also matched as the nested objects it stands for: each segment
// alone and joined to the one before it, so "http.request.headers.authorization"
// and "user.pin" are as sensitive as their nested forms. [Config.Keys] and
// [Config.Headers] add names (with '*' wildcards for prefix, suffix and
// substring matches); [Config.AllowKeys] and [Config.AllowHeaders] exempt
// names the defaults would catch. Headers such as Authorization, Cookie,
// Set-Cookie, Proxy-Authorization and X-API-Key are always replaced whole.
//
// Secrets in free text. Every other string — header values, parameter
// values, JSON strings and keys, log messages — goes through detectors:
//
//   - card: 13–19 digit payment card numbers, optionally grouped with single
//     spaces or dashes, that pass the Luhn check and start with a
//     payment-network digit (2–6 or 8), so millisecond timestamps and most
//     ids are left alone; integers in JSON are checked too
//   - jwt: JSON Web Tokens (eyJ….eyJ….sig, and five-part JWE)
//   - bearer: the credential after "Bearer "
//   - aws-key: AWS access key ids (AKIA or ASIA and 16 more characters)
//   - private-key: PEM private key blocks, through the END line (or to the
//     end of the text when the END line is missing)
//   - ssn: US social security numbers written ddd-dd-dddd
//   - email: e-mail addresses, only when [Config.Emails] is set, because the
//     user name is often what an analyst needs
//   - key-value: "name=value" and "name: value" pairs in text whose name is a
//     sensitive key, as in "https://host/cb?access_token=…" or
//     "login failed password=hunter2"
//   - trailguard-token: trailguard API tokens (tg_<id>_<secret>), only when
//     [Config.Tokens] is set (the collector's own records set it)
//
// Detectors see decoded text: JSON escapes (\u0034, \/) and URL encoding
// (%34, +) are decoded before detection, so a secret cannot slip through by
// being escaped. JSON strings that themselves hold a JSON document are
// scrubbed as JSON.
//
// # Replacement
//
// [Config.Mode] chooses what replaces a secret:
//
//   - [Remove] writes "[REDACTED]" for a sensitive key's value and
//     "[REDACTED:<kind>]" for a detector match.
//   - [Mask] keeps the last four digits of a card (PCI DSS 3.4.1 permits
//     it) and the first letter and domain of an e-mail address; every other
//     secret is removed as above, because any part of a token or password
//     helps an attacker.
//   - [HMAC] writes "hmac-sha256:<hex>", keyed with [Config.Secret]. The
//     same secret always gives the same token, so analysts can correlate
//     events and look a known value up with [Redactor.Hash] without ever
//     seeing it, as Vault's audit devices do. Cards are hashed over their
//     digits only, so "4111 1111 1111 1111" and "4111-1111-1111-1111" match.
//
// A [Redactor] is immutable and safe for concurrent use.
package redact
