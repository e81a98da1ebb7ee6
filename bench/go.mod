module github.com/trailguard/trailguard/bench

go 1.26.0

require (
	github.com/go-chi/httplog/v3 v3.3.0
	github.com/samber/slog-http v1.12.1
	github.com/trailguard/trailguard v0.0.0
	golang.org/x/mod v0.43.0
)

require (
	github.com/go-chi/chi/v5 v5.5.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	go.opentelemetry.io/otel v1.29.0 // indirect
	go.opentelemetry.io/otel/trace v1.29.0 // indirect
)

replace github.com/trailguard/trailguard => ../
