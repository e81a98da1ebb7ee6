package event

import (
	"encoding/json"
	"time"
)

// Event is one audit or security event. The zero value is an empty event;
// fields left at their zero value are omitted from the encoding.
type Event struct {
	// Timestamp is @timestamp: when the event happened, encoded in UTC.
	Timestamp time.Time

	// Kind is event.kind: KindEvent for records, KindAlert for detections.
	Kind string
	// Category is event.category (CategoryWeb, CategoryAuthentication, …).
	Category []string
	// Type is event.type (TypeAccess, TypeStart, TypeChange, …).
	Type []string
	// Action is event.action, a name from the OWASP Logging Vocabulary
	// (ActionLoginFail, ActionAuthzFail, …) or ActionHTTPRequest.
	Action string
	// Outcome is event.outcome: OutcomeSuccess, OutcomeFailure or
	// OutcomeUnknown.
	Outcome string
	// Reason is event.reason: why the outcome is what it is, e.g.
	// "bad password" for a failed login.
	Reason string
	// Duration is event.duration, encoded in nanoseconds as ECS requires.
	Duration time.Duration
	// ID is event.id, unique per event (see NewID).
	ID string
	// Dataset is event.dataset: which stream the event belongs to
	// (DatasetAccess, DatasetAuth, DatasetAudit, DatasetApp).
	Dataset string
	// Ingested is event.ingested: when a collector received the event.
	Ingested time.Time
	// Severity is event.severity, the numeric severity (slog levels map
	// onto it).
	Severity int

	// Message is message, a human-readable summary.
	Message string
	// LogLevel is log.level ("info", "warn", "error", …).
	LogLevel string
	// ErrorMessage is error.message, e.g. the value of a recovered panic.
	ErrorMessage string

	// RequestID is http.request.id, the per-request correlation id.
	RequestID string
	// TraceID is trace.id from a W3C traceparent header.
	TraceID string
	// SpanID is span.id from a W3C traceparent header.
	SpanID string

	// Method is http.request.method.
	Method string
	// Path is url.path.
	Path string
	// Query is url.query, already scrubbed.
	Query string
	// Original is url.original: the request target as the client sent it
	// (percent-encoding kept), scrubbed like Path and Query. httpaudit sets
	// it only when it differs from Path + "?" + Query, that is when the
	// client percent-encoded the path or the program recorded the path it
	// routed on as Path (httpaudit.SetPath: the gateway's normalised
	// path): detection rules for attacks (path traversal, injection) must
	// see the form attackers send.
	Original string
	// RequestBodyBytes is http.request.body.bytes.
	RequestBodyBytes int64
	// RequestBody is http.request.body.content: a captured, size-capped and
	// scrubbed request body.
	RequestBody string
	// Referrer is http.request.referrer.
	Referrer string
	// StatusCode is http.response.status_code.
	StatusCode int
	// ResponseBodyBytes is http.response.body.bytes.
	ResponseBodyBytes int64

	// SourceIP is source.ip: the peer address of the connection.
	SourceIP string
	// SourcePort is source.port.
	SourcePort int
	// ClientIP is client.ip: the originating client, which differs from
	// SourceIP when a trusted proxy forwarded the request.
	ClientIP string

	// UserID is user.id of the actor.
	UserID string
	// UserName is user.name of the actor.
	UserName string
	// UserRoles is user.roles of the actor.
	UserRoles []string
	// TargetUserID is user.target.id: the user an operation acted upon
	// (a role change, an account deletion).
	TargetUserID string
	// TargetUserName is user.target.name.
	TargetUserName string
	// UserAgent is user_agent.original.
	UserAgent string

	// ServiceName is service.name: the API that produced the event.
	ServiceName string
	// HostName is host.name.
	HostName string

	// Labels is labels: small keyword tags for grouping.
	Labels map[string]string

	// RequestHeaders holds chosen request headers, by lower-case name,
	// already scrubbed (trailguard.http.request.headers.*; ECS has no
	// field for arbitrary headers).
	RequestHeaders map[string]string

	// Audit describes a sensitive operation, under trailguard.audit.
	Audit *Audit
	// Attrs is trailguard.attrs: a JSON object of application attributes
	// (for example a slog record's attributes), already scrubbed.
	Attrs json.RawMessage

	// idBuf backs ID after SetNewID, so that minting an id allocates
	// nothing on the request path.
	idBuf [36]byte

	// Extra holds fields that Event does not model, by dotted ECS name,
	// each a JSON value. Decode fills it so that re-encoding loses nothing;
	// the encoder writes them, sorted by name, after the modelled fields.
	Extra map[string]json.RawMessage
}

// Audit describes a sensitive operation: who did what to which resource,
// and the state before and after. Actor and outcome live in the enclosing
// Event (user.*, event.action, event.outcome).
type Audit struct {
	// Resource names what was acted upon, e.g. "user/42" or "order/1001"
	// (trailguard.audit.resource).
	Resource string
	// Before is the resource's relevant state before the operation, a
	// scrubbed JSON value (trailguard.audit.before).
	Before json.RawMessage
	// After is the state after the operation (trailguard.audit.after).
	After json.RawMessage
}

// Values of event.kind.
const (
	KindEvent = "event"
	KindAlert = "alert"
)

// Values of event.category used by trailguard.
const (
	CategoryWeb            = "web"
	CategoryAuthentication = "authentication"
	CategoryIAM            = "iam"
	CategoryConfiguration  = "configuration"
	CategoryIntrusion      = "intrusion_detection"
	CategoryDatabase       = "database"
)

// Values of event.type used by trailguard.
const (
	TypeAccess   = "access"
	TypeStart    = "start"
	TypeEnd      = "end"
	TypeInfo     = "info"
	TypeChange   = "change"
	TypeAdmin    = "admin"
	TypeUser     = "user"
	TypeAllowed  = "allowed"
	TypeDenied   = "denied"
	TypeCreation = "creation"
	TypeDeletion = "deletion"
	TypeError    = "error"
)

// Values of event.outcome.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeUnknown = "unknown"
)

// Values of event.dataset, one per stream trailguard writes.
const (
	DatasetAccess = "trailguard.access"
	DatasetAuth   = "trailguard.auth"
	DatasetAudit  = "trailguard.audit"
	DatasetApp    = "trailguard.app"
)

// Values of event.action. Except for ActionHTTPRequest and
// ActionHTTPRequestStart these are names from the OWASP Logging Vocabulary.
const (
	ActionHTTPRequest           = "http_request"
	ActionHTTPRequestStart      = "http_request_start"
	ActionLog                   = "log"
	ActionLoginSuccess          = "authn_login_success"
	ActionLoginSuccessAfterFail = "authn_login_successafterfail"
	ActionLoginFail             = "authn_login_fail"
	ActionLoginFailMax          = "authn_login_fail_max"
	ActionLoginLock             = "authn_login_lock"
	ActionPasswordChange        = "authn_password_change"
	ActionPasswordChangeFail    = "authn_password_change_fail"
	ActionTokenCreated          = "authn_token_created"
	ActionTokenRevoked          = "authn_token_revoked"
	ActionTokenReuse            = "authn_token_reuse"
	ActionAuthzFail             = "authz_fail"
	ActionAuthzChange           = "authz_change"
	ActionAuthzAdmin            = "authz_admin"
	ActionRateLimitExceeded     = "excess_rate_limit_exceeded"
	ActionInputValidationFail   = "input_validation_fail"
	ActionMalicious404          = "malicious_excess_404"
	ActionMaliciousAttackTool   = "malicious_attack_tool"
	ActionMaliciousSQLi         = "malicious_sqli"
	ActionPrivilegeChanged      = "privilege_permissions_changed"
	ActionUserRoleChange        = "user_role_change"
	ActionSensitiveCreate       = "sensitive_create"
	ActionSensitiveRead         = "sensitive_read"
	ActionSensitiveUpdate       = "sensitive_update"
	ActionSensitiveDelete       = "sensitive_delete"
	ActionSessionCreated        = "session_created"
	ActionSessionExpired        = "session_expired"
	ActionSessionLogout         = "session_logout"
	ActionSysStartup            = "sys_startup"
	ActionSysShutdown           = "sys_shutdown"
	ActionSysCrash              = "sys_crash"
	ActionUserCreated           = "user_created"
	ActionUserUpdated           = "user_updated"
	ActionUserDeleted           = "user_deleted"
)
