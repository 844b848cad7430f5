package inspect

import (
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/redact"
)

// MaxBytes bounds the text of one inspect or redact request; the body
// limit applies too.
const MaxBytes = 1 << 20

// Authorizer decides a caller's request under the policy in force: nil
// when p may take action on resource from ip, a 403 otherwise; the
// decision is recorded in note.
type Authorizer interface {
	Allowed(p *coffer.Principal, action, resource, ip string, note *coffer.AccessNote) error
}

// Service inspects and redacts text for callers with read on inspect.
type Service struct{ auth Authorizer }

// New returns the service under auth.
func New(auth Authorizer) *Service { return &Service{auth: auth} }

func (s *Service) allowed(c coffer.Caller, text string) error {
	if err := s.auth.Allowed(c.Principal, "read", "inspect", c.IP, c.Note); err != nil {
		return err
	}
	if len(text) > MaxBytes {
		return coffer.Errorf(coffer.ETOOLARGE, "text is larger than %d bytes", MaxBytes)
	}
	return nil
}

// Inspect finds sensitive data in text: types, byte offsets and
// confidence, never the matched text itself.
func (s *Service) Inspect(c coffer.Caller, text string) ([]redact.Finding, error) {
	if err := s.allowed(c, text); err != nil {
		return nil, err
	}
	fs := redact.Find(text)
	c.Note.Count = len(fs)
	return fs, nil
}

// Redact replaces each finding in text with its mask ("" or "mask") or a
// [TYPE] placeholder ("placeholder"), and returns how many there were.
func (s *Service) Redact(c coffer.Caller, text, mode string) (string, int, error) {
	if err := s.allowed(c, text); err != nil {
		return "", 0, err
	}
	m := redact.ModeMask
	switch mode {
	case "", "mask":
	case "placeholder":
		m = redact.ModePlaceholder
	default:
		return "", 0, coffer.Errorf(coffer.EINVALID, "mode must be mask or placeholder")
	}
	c.Note.Count = len(redact.Find(text))
	return redact.Redact(text, m), c.Note.Count, nil
}
