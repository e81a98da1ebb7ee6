package event

// ecsField is one field of the Elastic Common Schema, as far as validation
// needs it.
type ecsField struct {
	typ     string   // Elasticsearch field type: keyword, long, date, ip, …
	array   bool     // the field is normally an array
	allowed []string // the allowed values, for categorisation fields
}

// ECSType returns the Elasticsearch type of the ECS field with the given
// dotted name ("http.request.method" → "keyword") and whether ECS defines it.
func ECSType(name string) (string, bool) {
	f, ok := ecsFields[name]
	return f.typ, ok
}

// ECSAllowed returns the values ECS allows for a categorisation field such
// as event.kind, event.category, event.type or event.outcome, or nil when
// the field is unconstrained.
func ECSAllowed(name string) []string {
	return ecsFields[name].allowed
}
