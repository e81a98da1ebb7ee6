package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

// Shares of shutdown_timeout, in per cent of it counted from the stop
// signal: the moment by which each step of a shutdown must be over. The
// order protects the trail: intake stops at once; requests in flight (an
// ingest request is answered only once its events are durable) get the
// first share; then the collector's own last audit events and the ledger's
// final signed checkpoint, the one step that must happen; then the parts
// that follow the ledger (index, detection, outputs, UI overview, report
// warmer), each stopped in parallel from the start of the ledger's step and
// abandoned, with a logged error naming it, past its share. What a part
// abandoned had not finished is redone at the next start from the ledger
// (each part says how in shutdown). The rest is left for the
// process to exit.
const (
	drainShare     = 40 // requests in flight finish or are cut
	ledgerShare    = 75 // the final checkpoint is written
	followersShare = 90 // the followers have stopped or are abandoned
)

// ShutdownPlan is when each step of a shutdown must be over (see the
// shares above).
type ShutdownPlan struct {
	// Start is when the stop was asked for (the signal).
	Start time.Time
	// Budget is shutdown_timeout.
	Budget time.Duration
	// Drain ends the requests in flight: they are cut then.
	Drain time.Time
	// Ledger ends the collector's own last audit events and the ledger's
	// close with its final checkpoint.
	Ledger time.Time
	// Followers ends the parts that follow the ledger.
	Followers time.Time
	// End is Start plus Budget: the process must have exited.
	End time.Time
}

// PlanShutdown splits budget, counted from start, into the steps' shares.
func PlanShutdown(start time.Time, budget time.Duration) ShutdownPlan {
	at := func(pct int64) time.Time { return start.Add(time.Duration(int64(budget) / 100 * pct)) }
	return ShutdownPlan{Start: start, Budget: budget, Drain: at(drainShare), Ledger: at(ledgerShare),
		Followers: at(followersShare), End: start.Add(budget)}
}

// CheckpointReserve is what a flush of audit events into the ledger
// leaves, at most, of the ledger's share of a shutdown for the ledger's
// close with its final checkpoint (FlushBy). Measured on the 2-core VM
// (ext4, shutdowns under 32 clients): the close took 69-221 ms quiet and
// up to 250 ms (a single node, load 4.5) or 600 ms (a collector, load 7-11)
// beside busy loops, while the flushes took 7-111 ms quiet and up to
// 290 ms loaded; a close abandoned for want of time costs only the final
// checkpoint, which the next start writes, while a flush abandoned loses
// the events it had not appended.
const CheckpointReserve = 500 * time.Millisecond

// FlushBy is when a flush of audit events into the ledger, starting now,
// is abandoned: all of what is left of the ledger's share but
// CheckpointReserve, or but a quarter when less than 2 s is left. An event
// the flush abandons is lost, a hole in the trail; a final checkpoint not
// written only leaves the last records, durable, to be signed by the next
// start's first checkpoint. The flushes had half of what was left, and
// under load lost events whose appends outlasted that half while the
// checkpoint that followed needed a tenth of it.
func (p ShutdownPlan) FlushBy(now time.Time) time.Time {
	left := p.Ledger.Sub(now)
	return p.Ledger.Add(-min(CheckpointReserve, max(left, 0)/4))
}

// ShutdownPlan is the plan of a shutdown of this collector asked for at
// start (its shutdown_timeout).
func (s *Server) ShutdownPlan(start time.Time) ShutdownPlan {
	return PlanShutdown(start, s.cfg.ShutdownTimeout)
}

// ErrFinalCheckpoint marks a shutdown that did not write the ledger's
// final signed checkpoint: the records are durable, but the newest ones
// are covered only by the next start's first checkpoint.
var ErrFinalCheckpoint = errors.New("final checkpoint not written")

// ErrAbandoned marks a shutdown that left a part still stopping when its
// share of shutdown_timeout ended; the error names the part and how the
// next start makes up for it.
var ErrAbandoned = errors.New("abandoned at shutdown")

// CloseStepHook, when set before New, runs at the start of each step of a
// shutdown with the step's name, in the goroutine that runs the step. It
// exists for tests of real processes (the test binary sets it to make a
// step hang); it is nil otherwise.
var CloseStepHook func(step string)

// StopStreams ends the live tails (GET /v1/tail): a shutdown calls it
// before it drains requests in flight, which tails would otherwise hold up
// until the drain's share ends. Serve and Close call it themselves; an
// embedding server (the gateway's API listener) calls it at its signal.
func (s *Server) StopStreams() { s.stopStreams() }

// Close shuts the collector down within shutdown_timeout from now (see
// CloseBy); Serve does it after draining requests.
func (s *Server) Close() error {
	return s.CloseBy(s.ShutdownPlan(time.Now()))
}

// CloseBy stops the collector within plan: the collector's own last audit
// events and the ledger's final signed checkpoint by plan.Ledger, the
// parts that follow the ledger by plan.Followers. A step still running at
// its deadline is abandoned: CloseBy returns an error naming it (and
// wrapping ErrAbandoned; ErrFinalCheckpoint too if the records are not all
// covered by a signed checkpoint), while the step goes on in the
// background until the process exits. Later calls wait for the first and
// return its result.
func (s *Server) CloseBy(plan ShutdownPlan) error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown(plan) })
	return s.closeErr
}

// stopPart is one step of a shutdown, run in its own goroutine so that a
// step that hangs holds up no other, and can be abandoned.
type stopPart struct {
	name    string // the step, as the log and errors name it
	recover string // how the next start makes up for an abandoned stop
	start   time.Time
	done    chan struct{}
	err     error
	took    time.Duration
}

// named is the step's error, saying which step it was.
func (p *stopPart) named() error {
	if p.err == nil {
		return nil
	}
	return fmt.Errorf("server: %s: %w", p.name, p.err)
}

// goStop runs f as the step name, in its own goroutine.
func (s *Server) goStop(name, recover string, f func() error) *stopPart {
	p := &stopPart{name: name, recover: recover, start: time.Now(), done: make(chan struct{})}
	s.closing.add(p)
	go func() {
		defer close(p.done)
		if s.closeHook != nil {
			s.closeHook(name)
		}
		p.err = f()
		p.took = time.Since(p.start)
	}()
	return p
}

// wait waits for p until deadline. A step past it is abandoned: logged,
// and the error says how the next start recovers.
func (s *Server) wait(p *stopPart, deadline time.Time) (finished bool, err error) {
	t := time.NewTimer(max(time.Until(deadline), 0))
	defer t.Stop()
	select {
	case <-p.done:
		return true, p.named()
	case <-t.C:
	}
	select {
	case <-p.done: // a dead heat
		return true, p.named()
	default:
	}
	after := time.Since(p.start).Round(time.Millisecond)
	s.log.Error("shutdown: step abandoned", "step", p.name, "after", after, "shutdown_timeout", s.cfg.ShutdownTimeout, "next start", p.recover)
	return false, fmt.Errorf("server: %w: %s did not end within its share of shutdown_timeout %v (abandoned after %v; %s)",
		ErrAbandoned, p.name, s.cfg.ShutdownTimeout, after, p.recover)
}

// shutdownProgress records the steps of a shutdown, for the log of a slow
// one.
type shutdownProgress struct {
	mu    sync.Mutex
	parts []*stopPart
}

func (p *shutdownProgress) add(s *stopPart) {
	p.mu.Lock()
	p.parts = append(p.parts, s)
	p.mu.Unlock()
}

// summary lists each step with its duration, or how long it has run.
func (p *shutdownProgress) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, s := range p.parts {
		select {
		case <-s.done:
			out = append(out, fmt.Sprintf("%s %v", s.name, s.took.Round(time.Millisecond)))
		default:
			out = append(out, fmt.Sprintf("%s still running after %v", s.name, time.Since(s.start).Round(time.Millisecond)))
		}
	}
	return strings.Join(out, ", ")
}

// Names of the steps of a shutdown (the log and errors use them; tests
// hold them up by name).
const (
	stepIndex     = "stopping the indexer"
	stepDetect    = "stopping detection"
	stepOutputs   = "closing the outputs"
	stepWarmer    = "stopping the report warmer"
	stepUI        = "stopping the UI follower"
	stepAudit     = "flushing the audit log"
	stepLedger    = "closing the ledger"
	recoverLedger = "the next start finds the records durable and signs them with its first checkpoint"
)

// shutdown is CloseBy's one run.
func (s *Server) shutdown(plan ShutdownPlan) error {
	start := time.Now()
	s.stopStreams() // when Close is called without Serve
	// The followers are told to stop first, each in its own goroutine:
	// none of them holds up the ledger's final checkpoint, and each saves
	// where it was (or, abandoned, is redone from the ledger at the next
	// start).
	//
	// They are told first, at once and without waiting: a follower still
	// running when the ledger closes would take the closed ledger for a
	// failure and restart.
	s.indexCancel()
	if d := s.detect; d != nil {
		d.cancel()
	}
	if s.forward != nil {
		s.forward.Stop()
	}
	if w := s.reportWarmer; w != nil {
		w.cancel()
	}
	if s.ui != nil {
		s.stopOverview()
	}
	followers := []*stopPart{
		s.goStop(stepIndex, "the index catches up from the ledger at the next start, from its last committed batch", func() error {
			err := <-s.indexDone
			if errors.Is(err, context.Canceled) {
				err = nil
			}
			// SQLite's close (a WAL checkpoint) is part of the step.
			return errors.Join(err, s.index.Close())
		}),
		s.goStop(stepDetect, "detection resumes from detect.cursor and evaluates the records after it again, alerts already stored recognised by their ids; notifications still queued are not sent", func() error {
			return s.closeDetection(plan.Followers)
		}),
		s.goStop(stepOutputs, "each output resumes from its saved cursor and sends what follows again", s.closeForward),
		s.goStop(stepWarmer, "the report warmer summarises the chunks it had not kept at the next start", func() error {
			s.stopReportWarmer()
			return nil
		}),
		s.goStop(stepUI, "the overview resumes from ui-overview.json and counts the records after it again", func() error {
			s.closeUI()
			return nil
		}),
	}

	// The trail: the collector's own last audit events, then the ledger's
	// final checkpoint. The audit flush gets all of what is left before
	// plan.Ledger but CheckpointReserve (FlushBy), so that a stuck audit
	// queue still leaves the ledger time to try.
	flushBy := plan.FlushBy(time.Now())
	audit := s.goStop(stepAudit, "the collector's own audit events not yet appended are lost (the requests they describe were answered)", func() error {
		close(s.sampleStop)
		<-s.sampleDone
		s.logSystem(event.ActionSysShutdown, "collector stopping")
		return s.audit.Close()
	})
	_, errAudit := s.wait(audit, flushBy)
	led := s.goStop(stepLedger, recoverLedger, func() error {
		err := s.ledger.Close()
		if errors.Is(err, ledger.ErrNoFinalCheckpoint) {
			return fmt.Errorf("server: %w: %w", ErrFinalCheckpoint, err)
		}
		return err
	})
	finished, errLedger := s.wait(led, plan.Ledger)
	if !finished {
		// The close did not end, but a checkpoint may cover every record
		// (the final one was written; the ledger was waiting for its
		// compaction or a witness). Claim it missing only if not.
		_, cp := s.ledger.LatestCheckpoint()
		if size := s.ledger.Size(); cp.Size < size {
			errLedger = fmt.Errorf("%w: %w (the last signed checkpoint covers %d of %d records)", ErrFinalCheckpoint, errLedger, cp.Size, size)
		} else {
			errLedger = fmt.Errorf("%w (the last signed checkpoint covers all %d records)", errLedger, size)
		}
	}

	errs := []error{errAudit, errLedger}
	for _, p := range followers {
		_, err := s.wait(p, plan.Followers)
		errs = append(errs, err)
	}
	if took := time.Since(start); took > time.Second {
		// Which step a slow shutdown spent its time in.
		s.log.Warn("slow shutdown", "took", took.Round(time.Millisecond), "steps", s.closing.summary())
	}
	return errors.Join(errs...)
}
