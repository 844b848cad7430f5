package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

func (s *Server) securityEvents(c *Call) (Reply, error) {
	c.Note.Target("read", "security")
	if err := s.c.Policies.Allowed(c.Principal, "read", "security", c.IP, &c.Note); err != nil {
		return Reply{}, err
	}
	q := c.R.URL.Query()
	var since time.Time
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return Reply{}, coffer.Errorf(coffer.EINVALID, "since must be an RFC 3339 time")
		}
		since = t
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return Reply{}, coffer.Errorf(coffer.EINVALID, "limit must be an integer from 1 to 1000")
		}
		limit = n
	}
	kind := q.Get("kind")
	if len(kind) > 64 {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "kind is too long")
	}
	evs, err := s.c.Detector.Events(c.R.Context(), since, kind, limit)
	if err != nil {
		return Reply{}, err
	}
	if evs == nil {
		evs = []coffer.SecurityEvent{}
	}
	c.Note.Count = len(evs)
	return Reply{Body: map[string]any{"events": evs}}, nil
}

// liftSuspension lets an admin restore a suspended principal.
func (s *Server) liftSuspension(c *Call) (Reply, error) {
	c.Note.Target("admin", "security")
	if err := s.c.Policies.Allowed(c.Principal, "admin", "security", c.IP, &c.Note); err != nil {
		return Reply{}, err
	}
	id := c.R.PathValue("principal")
	if id == "" || len(id) > 256 {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "principal must be 1 to 256 bytes")
	}
	if !printable(id) {
		return Reply{Status: http.StatusNoContent}, nil // no principal has such an id: nothing to lift
	}
	lifted, err := s.c.Detector.Lift(c.R.Context(), id)
	if err != nil {
		return Reply{}, err
	}
	if lifted {
		c.Note.Count = 1
		c.Note.Touch(coffer.SuspensionTarget(id))
	}
	return Reply{Status: http.StatusNoContent}, nil
}

// maxSuspension bounds a suspension by hand: a response, not a deletion.
const maxSuspension = 30 * 24 * time.Hour

// suspend lets an admin suspend a principal by hand, for
// {"duration":"1h"} (default 1h, at most 30 days): every request of its
// is refused (403) on every node until then or until lifted. Suspending
// oneself is refused: nobody could then lift it from this session.
func (s *Server) suspend(c *Call) (Reply, error) {
	c.Note.Target("admin", "security")
	if err := s.c.Policies.Allowed(c.Principal, "admin", "security", c.IP, &c.Note); err != nil {
		return Reply{}, err
	}
	id := c.R.PathValue("principal")
	if id == "" || len(id) > 256 || !printable(id) {
		return Reply{}, coffer.Errorf(coffer.EINVALID, "principal must be 1 to 256 bytes of printable UTF-8")
	}
	var req struct {
		Duration string `json:"duration"`
	}
	if c.R.ContentLength != 0 {
		if err := decodeJSON(c.R, &req); err != nil {
			return Reply{}, err
		}
	}
	d := time.Hour
	if req.Duration != "" {
		var err error
		if d, err = time.ParseDuration(req.Duration); err != nil || d <= 0 || d > maxSuspension {
			return Reply{}, coffer.Errorf(coffer.EINVALID, "duration must be a Go duration from 1s to 720h")
		}
	}
	if id == c.Principal.ID {
		c.Note.Deny("a principal may not suspend itself")
		return Reply{}, coffer.Errorf(coffer.ECONFLICT, "you cannot suspend yourself")
	}
	until := s.c.Now().Add(d).UTC().Truncate(time.Second)
	if err := s.c.Detector.Suspend(c.R.Context(), id, until); err != nil {
		return Reply{}, err
	}
	c.Note.Count = 1
	c.Note.Touch(coffer.SuspensionTarget(id))
	return Reply{Body: map[string]any{"principal": id, "until": until}}, nil
}

// suspensions lists the suspensions in force.
func (s *Server) suspensions(c *Call) (Reply, error) {
	c.Note.Target("read", "security")
	if err := s.c.Policies.Allowed(c.Principal, "read", "security", c.IP, &c.Note); err != nil {
		return Reply{}, err
	}
	list, err := s.c.Detector.ActiveSuspensions(c.R.Context())
	if err != nil {
		return Reply{}, err
	}
	out := make([]map[string]any, 0, len(list))
	for _, x := range list {
		out = append(out, map[string]any{"principal": x.Principal, "until": x.Until.UTC(), "reason": x.Reason})
	}
	c.Note.Count = len(out)
	return Reply{Body: map[string]any{"suspensions": out}}, nil
}
