package httpapi

import (
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/redact"
)

// Inspector inspects and redacts free text for a caller; it decides who
// may (inspect.Service).
type Inspector interface {
	Inspect(c coffer.Caller, text string) ([]redact.Finding, error)
	Redact(c coffer.Caller, text, mode string) (string, int, error)
}

type inspectReq struct {
	Text string `json:"text"`
	Mode string `json:"mode"`
}

func readInspect(c *Call, action string) (inspectReq, error) {
	c.Note.Target(action, "inspect")
	var req inspectReq
	return req, decodeJSON(c.R, &req)
}

// inspect finds sensitive data in free text: types, byte offsets and
// confidence, never the matched text itself.
func (s *Server) inspect(c *Call) (Reply, error) {
	req, err := readInspect(c, "inspect")
	if err != nil {
		return Reply{}, err
	}
	fs, err := s.c.Inspect.Inspect(c.caller(), req.Text)
	if err != nil {
		return Reply{}, err
	}
	type finding struct {
		Type       string  `json:"type"`
		Start      int     `json:"start"`
		End        int     `json:"end"`
		Confidence float64 `json:"confidence"`
	}
	out := make([]finding, 0, len(fs))
	for _, f := range fs {
		out = append(out, finding{f.Type, f.Start, f.End, f.Confidence})
	}
	return Reply{Body: map[string]any{"findings": out}}, nil
}

// redactText replaces each finding with its mask or a [TYPE] placeholder.
func (s *Server) redactText(c *Call) (Reply, error) {
	req, err := readInspect(c, "redact")
	if err != nil {
		return Reply{}, err
	}
	text, n, err := s.c.Inspect.Redact(c.caller(), req.Text, req.Mode)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: map[string]any{"text": text, "findings": n}}, nil
}
