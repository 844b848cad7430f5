package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/detect"
)

// Security is the admins' response to the detectors' findings; it decides
// who may (detect.Response).
type Security interface {
	Events(ctx context.Context, c coffer.Caller, read func() (detect.EventQuery, error)) ([]coffer.SecurityEvent, error)
	Lift(ctx context.Context, c coffer.Caller, id string) error
	Suspend(ctx context.Context, c coffer.Caller, id string, read func() (string, error)) (time.Time, error)
	Suspensions(ctx context.Context, c coffer.Caller) ([]coffer.Suspension, error)
}

func (s *Server) securityEvents(c *Call) (Reply, error) {
	evs, err := s.c.Security.Events(c.R.Context(), c.caller(), func() (detect.EventQuery, error) {
		q := c.R.URL.Query()
		eq := detect.EventQuery{Limit: 100, Kind: q.Get("kind")}
		if v := q.Get("since"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return eq, coffer.Errorf(coffer.EINVALID, "since must be an RFC 3339 time")
			}
			eq.Since = t
		}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return eq, coffer.Errorf(coffer.EINVALID, "limit must be an integer from 1 to 1000")
			}
			eq.Limit = n
		}
		if len(eq.Kind) > 64 {
			return eq, coffer.Errorf(coffer.EINVALID, "kind is too long")
		}
		return eq, nil
	})
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: map[string]any{"events": evs}}, nil
}

// liftSuspension lets an admin restore a suspended principal.
func (s *Server) liftSuspension(c *Call) (Reply, error) {
	if err := s.c.Security.Lift(c.R.Context(), c.caller(), c.R.PathValue("principal")); err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusNoContent}, nil
}

// suspend lets an admin suspend a principal by hand, for
// {"duration":"1h"} (default 1h, at most 30 days).
func (s *Server) suspend(c *Call) (Reply, error) {
	id := c.R.PathValue("principal")
	until, err := s.c.Security.Suspend(c.R.Context(), c.caller(), id, func() (string, error) {
		var req struct {
			Duration string `json:"duration"`
		}
		if c.R.ContentLength != 0 {
			if err := decodeJSON(c.R, &req); err != nil {
				return "", err
			}
		}
		return req.Duration, nil
	})
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: map[string]any{"principal": id, "until": until}}, nil
}

// suspensions lists the suspensions in force.
func (s *Server) suspensions(c *Call) (Reply, error) {
	list, err := s.c.Security.Suspensions(c.R.Context(), c.caller())
	if err != nil {
		return Reply{}, err
	}
	out := make([]map[string]any, 0, len(list))
	for _, x := range list {
		out = append(out, map[string]any{"principal": x.Principal, "until": x.Until.UTC(), "reason": x.Reason})
	}
	return Reply{Body: map[string]any{"suspensions": out}}, nil
}
