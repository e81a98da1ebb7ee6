package httpaudit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/trailguard/trailguard/event"
)

// User identifies the actor of a request (user.id, user.name, user.roles).
type User struct {
	// ID is user.id: the application's stable identifier of the user.
	ID string
	// Name is user.name: the login name, as typed on a failed attempt.
	Name string
	// Roles is user.roles; an administrative role here makes the
	// request's events count as administrator actions (PCI DSS
	// 10.2.1.2; by default admin, administrator, root, superuser).
	Roles []string
}

// ErrNoLogger is returned by Auth and Audit when ctx does not come from a
// request served through Logger.Middleware; nothing was recorded, so a
// fail-closed caller must refuse the operation.
var ErrNoLogger = errors.New("httpaudit: no audit logger in context (is the handler wrapped by Middleware?)")

// SetUser records the authenticated user of the current request; the
// request's events carry it from then on. Outside the middleware it does
// nothing.
func SetUser(ctx context.Context, u User) {
	if st := stateFrom(ctx); st != nil {
		a := st.lockActor()
		a.user = u
		a.mu.Unlock()
	}
}

// Attempt is the result of an authentication attempt.
type Attempt struct {
	// User is who tried to log in (user.name even on failure, as typed).
	User User
	// Success is the outcome.
	Success bool
	// Reason says why an attempt failed ("bad password", "unknown user",
	// "account locked", "mfa required"); recorded in event.reason.
	Reason string
	// Action overrides event.action; default authn_login_success or
	// authn_login_fail.
	Action string
}

// Auth records an authentication attempt of the current request. A
// successful attempt also sets the request's user (SetUser). With
// Config.FailClosed it returns only once the event is persisted, or an
// error: then the handler should answer as if the login failed.
func Auth(ctx context.Context, a Attempt) error {
	st := stateFrom(ctx)
	if st == nil {
		return ErrNoLogger
	}
	l := st.l
	ev := l.contextEvent(st)
	ev.Category = []string{event.CategoryAuthentication}
	ev.Dataset = event.DatasetAuth
	ev.UserID = l.cut(l.red.String(a.User.ID))
	ev.UserName = l.cut(l.red.String(a.User.Name))
	ev.UserRoles = a.User.Roles
	ev.Reason = l.cut(l.red.String(a.Reason))
	ev.Action = a.Action
	if a.Success {
		ev.Type = []string{event.TypeStart, event.TypeAllowed}
		ev.Outcome = event.OutcomeSuccess
		if ev.Action == "" {
			ev.Action = event.ActionLoginSuccess
		}
		SetUser(ctx, a.User)
	} else {
		ev.Type = []string{event.TypeStart, event.TypeDenied}
		ev.Outcome = event.OutcomeFailure
		if ev.Action == "" {
			ev.Action = event.ActionLoginFail
		}
	}
	return l.enqueue(ctx, ev, l.cfg.FailClosed)
}

// Op describes a sensitive operation for Audit.
type Op struct {
	// Action is event.action: an OWASP Logging Vocabulary name such as
	// event.ActionUserRoleChange, event.ActionPrivilegeChanged,
	// event.ActionSensitiveUpdate or event.ActionAuthzFail.
	Action string
	// Resource names what is acted upon ("user/42", "order/1001").
	Resource string
	// Target is the user acted upon, when the resource is a user.
	Target *User
	// Before and After are the relevant state around the operation. They
	// are marshalled to JSON and scrubbed (a "password" key is redacted
	// at any depth).
	Before, After any
	// Outcome is event.outcome; default success.
	Outcome string
	// Reason explains the outcome (event.reason), e.g. why access was
	// denied.
	Reason string
	// Category and Type override the ECS categorisation derived from
	// Action.
	Category, Type []string
}

// Audit records a sensitive operation by the current request's user. With
// Config.FailClosed it returns only once the event is persisted, or an
// error: then the handler should refuse the operation (or roll it back).
func Audit(ctx context.Context, op Op) error {
	return audit(ctx, op, false)
}

// AuditPersisted is Audit that returns only once the event is persisted
// (or with an error after Config.WriteTimeout), whatever Config.FailClosed
// says: for an operation that must be on record before it is answered,
// such as a read of the audit trail, in a logger whose other events must
// not wait (PCI DSS 10.2.1.3: a crash right after the answer must not lose
// the record of the read).
func AuditPersisted(ctx context.Context, op Op) error {
	return audit(ctx, op, true)
}

// AuditPending is AuditPersisted in two steps: it records the event at
// once and returns a function (call it once) that waits until the event
// is persisted, so that the caller can do its work meanwhile and answer
// only after the wait (the collector's reads run their query while their
// record is written).
func AuditPending(ctx context.Context, op Op) (wait func() error) {
	l, ev, err := auditEvent(ctx, op)
	if err != nil {
		return func() error { return err }
	}
	return l.enqueuePending(ctx, item{ev: ev})
}

func audit(ctx context.Context, op Op, persisted bool) error {
	l, ev, err := auditEvent(ctx, op)
	if err != nil {
		return err
	}
	return l.enqueue(ctx, ev, l.cfg.FailClosed || persisted)
}

// auditEvent builds the event Audit records.
func auditEvent(ctx context.Context, op Op) (*Logger, *event.Event, error) {
	st := stateFrom(ctx)
	if st == nil {
		return nil, nil, ErrNoLogger
	}
	if op.Action == "" {
		return nil, nil, errors.New("httpaudit: Audit: Op.Action is required")
	}
	l := st.l
	ev := l.contextEvent(st)
	ev.Dataset = event.DatasetAudit
	ev.Action = op.Action
	ev.Outcome = op.Outcome
	if ev.Outcome == "" {
		ev.Outcome = event.OutcomeSuccess
	}
	ev.Reason = l.cut(l.red.String(op.Reason))
	ev.Category, ev.Type = categorize(op.Action, ev.Outcome)
	if op.Category != nil {
		ev.Category = op.Category
	}
	if op.Type != nil {
		ev.Type = op.Type
	}
	if op.Target != nil {
		ev.TargetUserID = l.cut(l.red.String(op.Target.ID))
		ev.TargetUserName = l.cut(l.red.String(op.Target.Name))
	}
	a := &event.Audit{Resource: l.cut(l.red.String(op.Resource))}
	var err error
	if a.Before, err = l.scrubValue(op.Before); err != nil {
		return nil, nil, fmt.Errorf("httpaudit: Audit %s: before: %w", op.Action, err)
	}
	if a.After, err = l.scrubValue(op.After); err != nil {
		return nil, nil, fmt.Errorf("httpaudit: Audit %s: after: %w", op.Action, err)
	}
	ev.Audit = a
	return l, ev, nil
}

// scrubValue marshals v and scrubs the result with the JSON walker, which
// sees exactly what will be stored whatever Go type v had (structs with
// json tags included).
func (l *Logger) scrubValue(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return l.red.JSON(nil, b)
}

// contextEvent starts an event that belongs to a request: correlation,
// origin (source and client address, user agent), method, path, actor.
func (l *Logger) contextEvent(st *state) *event.Event {
	ev := l.requestEvent(st, l.cfg.Now())
	ev.Category, ev.Dataset, ev.RequestHeaders = nil, "", nil
	u, _ := st.actor()
	ev.UserID, ev.UserName, ev.UserRoles = l.cut(l.red.String(u.ID)), l.cut(l.red.String(u.Name)), u.Roles
	return ev
}

// categorize maps an OWASP action onto ECS event.category and event.type.
func categorize(action, outcome string) (category, typ []string) {
	denied := outcome == event.OutcomeFailure
	switch action {
	case event.ActionAuthzFail:
		return []string{event.CategoryIAM}, []string{event.TypeDenied}
	case event.ActionUserRoleChange, event.ActionPrivilegeChanged, event.ActionAuthzChange, event.ActionAuthzAdmin:
		return []string{event.CategoryIAM}, []string{event.TypeChange, event.TypeAdmin}
	case event.ActionUserCreated:
		return []string{event.CategoryIAM}, []string{event.TypeUser, event.TypeCreation}
	case event.ActionUserDeleted:
		return []string{event.CategoryIAM}, []string{event.TypeUser, event.TypeDeletion}
	case event.ActionUserUpdated, event.ActionPasswordChange, event.ActionPasswordChangeFail:
		return []string{event.CategoryIAM}, []string{event.TypeUser, event.TypeChange}
	case event.ActionTokenCreated, event.ActionTokenRevoked:
		return []string{event.CategoryIAM}, []string{event.TypeChange}
	case event.ActionSensitiveCreate:
		return []string{event.CategoryDatabase}, []string{event.TypeCreation}
	case event.ActionSensitiveRead:
		return []string{event.CategoryDatabase}, []string{event.TypeAccess}
	case event.ActionSensitiveUpdate:
		return []string{event.CategoryDatabase}, []string{event.TypeChange}
	case event.ActionSensitiveDelete:
		return []string{event.CategoryDatabase}, []string{event.TypeDeletion}
	case event.ActionInputValidationFail, event.ActionRateLimitExceeded:
		return []string{event.CategoryWeb}, []string{event.TypeDenied}
	}
	if denied {
		return []string{event.CategoryWeb}, []string{event.TypeDenied}
	}
	return []string{event.CategoryWeb}, []string{event.TypeChange}
}
