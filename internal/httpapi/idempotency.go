package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/idempotency"
)

// once runs a create sent with an Idempotency-Key header at most once per
// key and principal: the first request claims the key and its answer is
// kept; a retry with the same key and request gets that answer again
// (marked Idempotent-Replayed: true), creating nothing.
func (s *Server) once(c *Call, key string, h HandlerFunc) (Reply, error) {
	if err := idempotency.ValidKey(key); err != nil {
		return Reply{}, err
	}
	body, err := io.ReadAll(c.R.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return Reply{}, coffer.Errorf(coffer.ETOOLARGE, "request body too large")
		}
		return Reply{}, coffer.Errorf(coffer.EMALFORMED, "request body unreadable")
	}
	c.R.Body = io.NopCloser(bytes.NewReader(body))
	fp, err := s.c.Idempotency.Fingerprint(c.R.Context(), c.R.Method, c.R.URL.RequestURI(), body)
	if err != nil {
		return Reply{}, err
	}
	claim, kept, err := s.c.Idempotency.Begin(c.R.Context(), c.Principal, c.IP, key, fp)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.EFORBIDDEN {
			c.Note.Deny("answer kept for its Idempotency-Key withheld: the caller's authority changed since")
		}
		return Reply{}, err
	}
	if kept != nil {
		// Audited as the act it replays (what was made, under which
		// rule), decided again by the Keeper.
		c.header.Set("Idempotent-Replayed", "true")
		c.Note = kept.Note
		c.Note.Decision = "allow"
		c.Note.Reason = "answer kept for its Idempotency-Key replayed; nothing done"
		return Reply{Status: kept.Status, ContentType: kept.ContentType, Raw: kept.Body}, nil
	}
	c.Note.KeepDecided = true
	reply, err := h(c)
	var out []byte
	if err == nil {
		out, err = encodeReply(&reply)
	}
	ctx := c.R.Context()
	if err != nil || reply.Status >= 300 {
		// Nothing was created: a retry runs the request again. (The
		// database may be down: keep trying in the background; retries
		// wait, 409, meanwhile.)
		if aerr := claim.Abandon(ctx); aerr != nil {
			s.c.Logger.Warn("idempotency key not released yet; retrying", "request_id", c.RequestID, "error", aerr)
			go s.settle(context.WithoutCancel(ctx), c.RequestID, func(ctx context.Context) error { return claim.Abandon(ctx) })
		}
		return reply, err
	}
	ans := idempotency.Answer{Status: reply.Status, ContentType: reply.ContentType, Body: out, Note: c.Note}
	if ferr := claim.Finish(ctx, ans); ferr != nil {
		// The create is done; its answer must be kept for the retries
		// (the database may be restarting): keep trying in the background,
		// retries wait (409) meanwhile.
		s.c.Logger.Warn("the answer of an idempotent request was not kept yet; retrying", "request_id", c.RequestID, "error", ferr)
		go s.settle(context.WithoutCancel(ctx), c.RequestID, func(ctx context.Context) error { return claim.Finish(ctx, ans) })
	}
	reply.Raw, reply.Body = out, nil
	return reply, nil
}

// settle retries keeping an answer, or releasing a key, for up to a
// minute (a database restarting); a claim taken over meanwhile ends it.
func (s *Server) settle(ctx context.Context, requestID string, do func(context.Context) error) {
	pause := 100 * time.Millisecond
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		time.Sleep(pause)
		pause = min(2*pause, 2*time.Second)
		err := do(ctx)
		if err == nil {
			return
		}
		if errors.Is(err, idempotency.ErrClaimLost) {
			break
		}
	}
	s.c.Logger.Error("an idempotency key could not be settled: its retries wait for the claim to run out",
		"request_id", requestID)
}
