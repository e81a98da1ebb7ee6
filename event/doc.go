//go:generate go run ./internal/ecsgen -in ../../shared/ecs/ecs_flat.yml -out ecs_fields.go

// Package event defines trailguard's audit and security event: one Elastic
// Common Schema (ECS) document per request, authentication attempt or
// sensitive operation.
//
// An [Event] is a plain struct whose fields map one-to-one onto ECS field
// names (documented on each field); fields of trailguard's own live under
// "trailguard.*". [Event.AppendJSON] encodes it as one line of JSON with a
// fixed key order and every control character escaped, so attacker-chosen
// input (a path, a user agent, a user name) can never forge or split a log
// line (CWE-117). [Decode] is the inverse used at ingest: it accepts nested
// or dotted ECS documents and keeps fields it does not model in
// [Event.Extra], so nothing a shipper sends is lost.
//
// Action names follow the OWASP Logging Vocabulary (see the Action
// constants); categorisation fields use the values ECS allows, which
// [Validate] checks against the ECS table generated into this package.
package event
