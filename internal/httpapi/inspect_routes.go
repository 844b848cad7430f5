package httpapi

import (
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/redact"
)

// maxInspectBytes bounds the text of one inspect or redact request; the
// body limit applies too.
const maxInspectBytes = 1 << 20

type inspectReq struct {
	Text string `json:"text"`
	Mode string `json:"mode"`
}

func (s *Server) readInspect(c *Call, action string) (inspectReq, error) {
	c.Note.Target(action, "inspect")
	var req inspectReq
	if err := decodeJSON(c.R, &req); err != nil {
		return req, err
	}
	if err := s.c.Policies.Allowed(c.Principal, "read", "inspect", c.IP, &c.Note); err != nil {
		return req, err
	}
	if len(req.Text) > maxInspectBytes {
		return req, coffer.Errorf(coffer.ETOOLARGE, "text is larger than %d bytes", maxInspectBytes)
	}
	return req, nil
}

// inspect finds sensitive data in free text: types, byte offsets and
// confidence, never the matched text itself.
func (s *Server) inspect(c *Call) (Reply, error) {
	req, err := s.readInspect(c, "inspect")
	if err != nil {
		return Reply{}, err
	}
	fs := redact.Find(req.Text)
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
	c.Note.Count = len(out)
	return Reply{Body: map[string]any{"findings": out}}, nil
}

// redactText replaces each finding with its mask or a [TYPE] placeholder.
func (s *Server) redactText(c *Call) (Reply, error) {
	req, err := s.readInspect(c, "redact")
	if err != nil {
		return Reply{}, err
	}
	mode := redact.ModeMask
	switch req.Mode {
	case "", "mask":
	case "placeholder":
		mode = redact.ModePlaceholder
	default:
		return Reply{}, coffer.Errorf(coffer.EINVALID, "mode must be mask or placeholder")
	}
	c.Note.Count = len(redact.Find(req.Text))
	return Reply{Body: map[string]any{"text": redact.Redact(req.Text, mode), "findings": c.Note.Count}}, nil
}
