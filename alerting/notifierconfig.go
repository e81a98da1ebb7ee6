package alerting

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
)

// nameRE is what a notifier's name may be: it is a label value in the
// collector's metrics and a word in its logs, written there as it is, so
// quotes, backslashes, line breaks and non-ASCII bytes (which Go's quoting
// and the Prometheus text format escape differently) are kept out.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Check reports the mistakes in c that its text alone shows, without
// reading a file or reaching the receiver: a type or min_level not known,
// a url missing or of no use to the type, a webhook without secret_file,
// a name that is not a plain word.
// Each names the notifier and the key. The collector checks its
// configuration with it when loading it, before anything is on disk;
// NewNotifier checks it too. Without it an http notifier with a url of
// another scheme, or none, was refused by each delivery only, once the
// collector was running and the first alert was on its way.
func (c NotifierConfig) Check() error {
	name := c.Name
	if name == "" || !nameRE.MatchString(name) {
		// A bad name is not repeated in each message: it may hold a
		// line break.
		name = c.Type
	}
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("notifier %s: "+format, append([]any{name}, a...)...))
	}
	if c.Name != "" && !nameRE.MatchString(c.Name) {
		add("name %q: want up to 64 letters, digits, '_', '-' or '.', beginning with a letter or digit (it labels the notifier's metrics)", c.Name)
	}
	if levelRank(c.MinLevel) < 0 {
		add("min_level %q: want informational, low, medium, high or critical", c.MinLevel)
	}
	switch c.Type {
	case "webhook", "slack", "alertmanager", "syslog":
	case "":
		add("type is missing: want webhook, slack, syslog or alertmanager")
	default:
		add("type %q: want webhook, slack, syslog or alertmanager", c.Type)
	}
	if c.URL == "" {
		add("url is missing")
	} else if err := checkURL(c.Type, c.URL); err != nil {
		add("%w", err)
	}
	if c.Type == "webhook" && c.SecretFile == "" {
		add("a webhook needs secret_file (the HMAC-SHA256 key receivers check)")
	}
	return errors.Join(errs...)
}

// checkURL refuses a url that no delivery of type typ could use.
func checkURL(typ, raw string) error {
	u, err := url.Parse(raw)
	switch typ {
	case "syslog":
		if err != nil || u.Host == "" || u.Port() == "" {
			return fmt.Errorf("url %q: want tcp://host:port, tls://host:port or udp://host:port", raw)
		}
		if u.Scheme != "tcp" && u.Scheme != "tls" && u.Scheme != "udp" {
			return fmt.Errorf("url %q: scheme must be tcp, tls or udp", raw)
		}
	case "webhook", "slack", "alertmanager":
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("url %q: want an http:// or https:// URL with a host, e.g. https://hooks.example.com/trailguard", raw)
		}
	}
	return nil
}
