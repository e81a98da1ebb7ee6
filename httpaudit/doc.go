// Package httpaudit is net/http middleware that records every request,
// authentication attempt and sensitive operation of a Go API as an ECS
// event (package event), scrubbed of secrets (package redact) and written
// through a bounded asynchronous queue to a sink.Sink.
//
// It works with any router that accepts func(http.Handler) http.Handler
// middleware: the standard library's ServeMux, chi, gorilla/mux and others.
//
// Each request gets a correlation id (http.request.id): an incoming
// X-Request-ID is kept when it is short and made of safe characters,
// otherwise a time-ordered UUIDv7 is generated. The id is echoed in the
// response, available to handlers through [RequestID], attached to the
// application's own slog records by [Logger.SlogHandler], and propagated to
// outgoing calls by [Transport]. A W3C traceparent header fills trace.id and
// span.id.
//
// Handlers report what only they know: [SetUser] names the authenticated
// user, [Auth] records a login attempt and [Audit] records a sensitive
// operation with its before and after state. With Config.FailClosed, Auth
// and Audit return only once the event is persisted, and return an error
// when it cannot be, so the handler can refuse the operation rather than
// perform it unaudited.
//
// The queue never loses audit, authentication, error or panic events: when
// it is full their writers wait. Only plain access events of successful
// requests may be dropped under overload, and every drop is counted
// ([Logger.Stats]). [Logger.Close] drains the queue and closes the sink.
package httpaudit
