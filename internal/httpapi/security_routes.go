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
