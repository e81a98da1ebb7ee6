// Package interop tests trailguard against the real clients of other
// ecosystems. It is its own module so that those clients (here the
// OpenTelemetry Go SDK) never become dependencies of trailguard.
package interop

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/server"
)

// TestOpenTelemetrySDK: an application's OpenTelemetry logs, exported by
// the SDK's own OTLP/HTTP exporter (protobuf, gzip, bearer token) to a
// running collector, arrive in the ledger as ECS events.
func TestOpenTelemetrySDK(t *testing.T) {
	cfg := server.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Origin = "interop.example/trailguard"
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("collector: %v", err)
		}
	}()
	_, token, err := srv.Tokens().Create("otel-app", access.RoleIngest)
	if err != nil {
		t.Fatal(err)
	}

	exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(ln.Addr().String()), otlploghttp.WithInsecure(),
		otlploghttp.WithCompression(otlploghttp.GzipCompression), otlploghttp.WithHeaders(map[string]string{"Authorization": "Bearer " + token}))
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("host.name", "app-7"))
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
	logger := provider.Logger("checkout/auth", otellog.WithInstrumentationVersion("0.9.1"))

	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	tctx := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled}))
	at := time.Now().Add(-time.Second).UTC()
	const n = 200
	for i := range n {
		var r otellog.Record
		r.SetTimestamp(at)
		r.SetEventName("authn_login_fail")
		r.SetSeverity(otellog.SeverityWarn)
		r.SetBody(attribute.StringValue("login failed"))
		r.AddAttributes(attribute.String("user.name", "alice"), attribute.String("client.address", "198.51.100.23"),
			attribute.Int("http.response.status_code", 401), attribute.String("event.outcome", "failure"),
			attribute.Int("attempt", i), attribute.String("password", "hunter2-is-secret"))
		logger.Emit(tctx, r)
	}
	if err := provider.Shutdown(ctx); err != nil { // flushes the batch
		t.Fatal(err)
	}

	deadline := time.Now().Add(10 * time.Second)
	var got []*event.Event
	for {
		got = got[:0]
		for e, err := range srv.Ledger().Entries(0) {
			if err != nil {
				t.Fatal(err)
			}
			ev, err := event.Decode(e.Data)
			if err != nil {
				t.Fatal(err)
			}
			if ev.ServiceName == "checkout" {
				got = append(got, ev)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(got) != n {
		t.Fatalf("%d of %d log records stored", len(got), n)
	}
	e := got[0]
	if e.Action != "authn_login_fail" || e.Outcome != "failure" || e.UserName != "alice" || e.ClientIP != "198.51.100.23" ||
		e.StatusCode != 401 || e.LogLevel != "warn" || e.Message != "login failed" || e.HostName != "app-7" ||
		e.TraceID != traceID.String() || e.SpanID != spanID.String() || !e.Timestamp.Equal(at) {
		t.Errorf("mapped event: %+v", e)
	}
	line := e.AppendJSON(nil)
	for _, want := range []string{`"attempt":0`, `"name":"checkout/auth"`, `"version":"0.9.1"`} {
		if !bytes.Contains(line, []byte(want)) {
			t.Errorf("event lacks %s: %s", want, line)
		}
	}
	if bytes.Contains(line, []byte("hunter2-is-secret")) {
		t.Errorf("the password attribute reached the ledger: %s", line)
	}
}
