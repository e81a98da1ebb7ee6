package forward

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigErrors: every mistake in an output's configuration is refused
// at start, with a message naming the key to change.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.key")
	os.WriteFile(empty, nil, 0o600)
	off := false
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Name: "Bad Name", Type: TypeElasticsearch, URL: "http://es:9200"}, "name"},
		// The rule the message gives, and docs/scale-out.md, must be the
		// one applied: "_vl" is made of the allowed characters.
		{Config{Name: "_vl", Type: TypeElasticsearch, URL: "http://es:9200"}, "the first a letter or digit"},
		{Config{Name: "x", Type: "kafka", URL: "http://k:9092"}, "type"},
		{Config{Name: "x", Type: TypeElasticsearch, URL: "tcp://es:9200"}, "http:// or https://"},
		{Config{Name: "x", Type: TypeSyslog, URL: "http://siem:514"}, "tcp://host:port"},
		{Config{Name: "x", Type: TypeSyslog, URL: "tcp://siem:514", Facility: "local9"}, "facility"},
		{Config{Name: "x", Type: TypeVictoriaLogs, URL: "http://vl:9428", Protocol: "loki"}, "protocol"},
		{Config{Name: "x", Type: TypeVictoriaLogs, URL: "http://vl:9428", LedgerFields: &off}, "ledger_fields"},
		{Config{Name: "x", Type: TypeVictoriaLogs, URL: "http://vl:9428", StorageFlushInterval: -time.Second}, "storage_flush_interval"},
		{Config{Name: "x", Type: TypeElasticsearch, URL: "http://es:9200", Start: "middle"}, "start"},
		{Config{Name: "x", Type: TypeElasticsearch, URL: "http://es:9200", Workers: 99}, "workers"},
		{Config{Name: "x", Type: TypeElasticsearch, URL: "http://es:9200", APIKeyFile: empty}, "api_key_file"},
		{Config{Name: "x", Type: TypeElasticsearch, URL: "http://es:9200", PasswordFile: filepath.Join(dir, "missing")}, "password_file"},
		{Config{Name: "x", Type: TypeElasticsearch, URL: "https://es:9200", TLS: TLSConfig{CAFile: empty}}, "ca_file"},
		{Config{Name: "x", Type: TypeElasticsearch, URL: "http://user:secret@"}, "url"},
	} {
		_, err := Open([]Config{tc.cfg}, Options{Dir: dir, Origin: testOrigin, Logger: quiet})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %q", tc.cfg, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error shows the URL's password: %v", err)
		}
	}
	twice := Config{Name: "x", Type: TypeElasticsearch, URL: "http://es:9200"}
	if _, err := Open([]Config{twice, twice}, Options{Dir: dir, Origin: testOrigin, Logger: quiet}); err == nil || !strings.Contains(err.Error(), "two outputs") {
		t.Errorf("two outputs with one name: %v", err)
	}
}
