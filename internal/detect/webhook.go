package detect

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Webhook request headers.
const (
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256 of the body
	// under the webhook's secret.
	HeaderSignature = "X-Coffer-Signature"
	// HeaderTimestamp carries the Unix time (seconds) of the attempt.
	HeaderTimestamp = "X-Coffer-Timestamp"

	// maxBackoff caps the wait between two delivery attempts.
	maxBackoff = 5 * time.Minute
)

// Sign returns the X-Coffer-Signature value for body under secret:
// "sha256=" followed by the lower-case hex HMAC-SHA256(secret, body).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature reports whether header (an X-Coffer-Signature value) is
// the signature of body under secret, comparing in constant time. An empty
// secret verifies nothing.
//
// A webhook body is the JSON of one security event; its "id" is unique and
// stays the same across retries, so receivers should drop ids they have
// already seen (the signature covers the body, not X-Coffer-Timestamp).
func VerifySignature(secret string, body []byte, header string) bool {
	if secret == "" {
		return false
	}
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	mac, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(mac, m.Sum(nil))
}

// hookWorker delivers events to one webhook, in order, from its own
// bounded queue, so one slow receiver delays no other.
type hookWorker struct {
	d       *Detector
	hook    Webhook
	queue   chan []byte
	dropped atomic.Uint64
}

// enqueue never blocks: when the queue is full the event is not sent
// (it is still stored) and the drop is logged.
func (h *hookWorker) enqueue(body []byte) {
	select {
	case h.queue <- body:
	default:
		n := h.dropped.Add(1)
		if n == 1 || n%100 == 0 {
			h.d.log.Warn("detect: webhook queue full, events not sent", "webhook", h.hook, "dropped_total", n)
		}
	}
}

func (h *hookWorker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case body := <-h.queue:
			h.deliver(ctx, body)
		}
	}
}

// deliver tries up to WebhookAttempts times, backing off exponentially
// with jitter between tries; it gives up at once on an answer that a retry
// cannot change (a 4xx other than 408 and 429).
func (h *hookWorker) deliver(ctx context.Context, body []byte) {
	cfg := h.d.cfg
	for attempt := 1; ; attempt++ {
		err := h.post(ctx, body)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		var se statusError
		final := errors.As(err, &se) && !se.retryable()
		if final || attempt >= cfg.WebhookAttempts {
			h.d.log.Error("detect: webhook delivery failed", "webhook", h.hook, "attempts", attempt, "err", err)
			return
		}
		t := time.NewTimer(h.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// backoff is WebhookBackoff·2^(attempt-1) plus up to half of that again.
func (h *hookWorker) backoff(attempt int) time.Duration {
	b := h.d.cfg.WebhookBackoff << min(attempt-1, 20)
	if b <= 0 || b > maxBackoff {
		b = maxBackoff
	}
	var r [8]byte
	if half := uint64(b / 2); half > 0 {
		if _, err := io.ReadFull(h.d.rand, r[:]); err == nil {
			b += time.Duration(binary.BigEndian.Uint64(r[:]) % half) // #nosec G115 -- below half = b/2, and 0 < b ≤ maxBackoff: fits int64
		}
	}
	return b
}

type statusError struct{ code int }

func (e statusError) Error() string { return fmt.Sprintf("webhook answered %d", e.code) }

func (e statusError) retryable() bool {
	return e.code >= 500 || e.code == http.StatusRequestTimeout || e.code == http.StatusTooManyRequests
}

// post makes one signed attempt.
func (h *hookWorker) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, h.d.cfg.WebhookTimeout)
	defer cancel()
	return SignedPost(ctx, h.d.http, h.hook.URL, "coffer-webhook/1", h.hook.Secret, h.d.now(), body)
}

// SignedPost POSTs body, JSON, to target with hc, signed as webhooks are
// (X-Coffer-Signature over body under secret, X-Coffer-Timestamp at now),
// and returns nil on a 2xx answer. An error never repeats the URL, whose
// path or query may carry a token. The audit witness is fed this way too.
func SignedPost(ctx context.Context, hc *http.Client, target, userAgent, secret string, now time.Time, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return errors.New("bad webhook url")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(secret, body))
	resp, err := hc.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, which may hold a token in its path
		// or query (chat webhooks do): keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("webhook post: %w", ue.Err)
		}
		return fmt.Errorf("webhook post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return statusError{resp.StatusCode}
	}
	return nil
}

// RedactURL keeps a URL's scheme and host, and "/…" for any path or
// query: paths and queries of webhook URLs often carry a token.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid url)"
	}
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		s += "/…"
	}
	return s
}
