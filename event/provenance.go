package event

import (
	"fmt"
	"strings"
)

// Values that say "the collector made this record". The collector trusts
// records that carry them: its alert store rebuilds alerts and their
// status changes from them at start, and compliance reports count them as
// the collector's own reads, refusals, starts and stops. A shipper's
// token must not be able to make them (CheckProvenance).
const (
	// CollectorService is service.name of the collector's own records.
	CollectorService = "trailguard-collector"
	// DatasetAlert is event.dataset of the alerts detection stores.
	DatasetAlert = "trailguard.alert"
	// DatasetDecision is event.dataset of block decisions.
	DatasetDecision = "trailguard.decision"
)

// LedgerOrigin is the field a collector's forwarding outputs add to every
// record they send (forward.Config.LedgerFields): the origin of the
// ledger that holds it. A record carrying it is another collector's, and
// readers that trust the collector's own records (alert store, reports)
// pass over it.
const LedgerOrigin = "trailguard.ledger.origin"

// CheckProvenance reports an error when an event sent to the collector
// claims to be one the collector made itself: service.name
// CollectorService, or event.dataset DatasetAlert or DatasetDecision,
// unless it says it was forwarded from another collector's ledger (a
// string LedgerOrigin), which the readers that trust such records do not
// take as their own. Case does not matter (a reader comparing in another
// case must not be fooled either).
func (ev *Event) CheckProvenance() error {
	if o := ev.Extra[LedgerOrigin]; len(o) > 2 && o[0] == '"' {
		return nil
	}
	switch {
	case strings.EqualFold(ev.ServiceName, CollectorService):
		return fmt.Errorf("service.name %q is reserved for the collector's own records: name your service otherwise (a collector forwarding its ledger adds %s)", ev.ServiceName, LedgerOrigin)
	case strings.EqualFold(ev.Dataset, DatasetAlert), strings.EqualFold(ev.Dataset, DatasetDecision):
		return fmt.Errorf("event.dataset %q is reserved for the collector's alerts and block decisions: use another dataset (a collector forwarding its ledger adds %s)", ev.Dataset, LedgerOrigin)
	}
	return nil
}

// reservedValue is CheckProvenance for the normaliser's one pass: it
// leaves a line holding a reserved value to Decode, whose caller refuses
// it with the reason.
func reservedValue(field int, v string) bool {
	switch {
	case len(v) != len(CollectorService) && len(v) != len(DatasetAlert) && len(v) != len(DatasetDecision):
		return false // the common case, one comparison
	case normFields[field].spec == fServiceName:
		return strings.EqualFold(v, CollectorService)
	default:
		return strings.EqualFold(v, DatasetAlert) || strings.EqualFold(v, DatasetDecision)
	}
}
