// Package compat tests the collector with the real third-party clients
// that users point at it: the official Elasticsearch clients for Go
// (go-elasticsearch) and Node.js (@elastic/elasticsearch). It is its own
// module, like bench/, so that those clients never become dependencies of
// trailguard; .ci/run runs its tests.
package compat
