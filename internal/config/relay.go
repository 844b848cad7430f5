package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/mask"
	"github.com/cofferhq/coffer/internal/relay/fieldpath"
)

// RelayTokenTypes are the token types a relay tokenize field may name.
func RelayTokenTypes() []string { return []string{"card_number", "ssn", "email", "phone", "string"} }

// RelayTokenModes are the tokenization modes a relay tokenize field may
// name ("" is random).
func RelayTokenModes() []string { return []string{"random", "deterministic", "format_preserving"} }

// DefaultRelayUpstreamTimeout is relay.upstream_timeout when 0.
const DefaultRelayUpstreamTimeout = 30 * time.Second

var (
	routeName  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	httpMethod = regexp.MustCompile(`^[A-Z]{1,16}$`)
)

// validateRelay checks relay: its listener apart from the API's, a client
// to act as, and every route (each problem listed, by key).
func (c *Config) validateRelay(add func(string, string, ...any)) {
	r := c.Relay
	if r.Listen == "" {
		if len(r.Routes) > 0 || r.Client != "" {
			add("relay.listen", "must be set when relay.client or relay.routes are (the relay is off while it is empty)")
		}
		return
	}
	if err := checkAddr(r.Listen); err != nil {
		add("relay.listen", "%v", err)
	} else {
		for key, other := range map[string]string{"listen": c.Listen, "metrics_listen": c.MetricsListen} {
			if sameAddr(r.Listen, other) {
				add("relay.listen", "must differ from %s", key)
			}
		}
	}
	if strings.TrimSpace(r.Client) == "" || len(r.Client) > 128 {
		add("relay.client", "must name the client the relay acts as (its roles decide what it may tokenize and detokenize)")
	}
	if r.UpstreamTimeout.Duration < 0 {
		add("relay.upstream_timeout", "must not be negative (0: 30s)")
	}
	if len(r.Routes) == 0 {
		add("relay.routes", "must list at least one route (an unmatched request is never forwarded)")
	}
	for _, p := range RelayRouteProblems(r.Routes) {
		add(p.Key, "%s", p.Message)
	}
}

// RelayProblem is one problem of a relay route list: the key it concerns
// (relay.routes[i]…) and what is wrong.
type RelayProblem struct {
	Key     string
	Message string
}

// RelayRouteProblems checks a list of relay routes: names unique, methods
// and paths well-formed and not matched twice, upstreams plain
// scheme://host[:port] URLs, and every field a path the relay can follow
// with a known type, mode or masker. It returns every problem, in order.
// A SIGHUP reload checks new routes with it before swapping them in.
func RelayRouteProblems(routes []RelayRoute) []RelayProblem {
	var out []RelayProblem
	add := func(key, format string, args ...any) {
		out = append(out, RelayProblem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	names := map[string]int{}
	matches := map[string]int{}
	for i, rt := range routes {
		key := fmt.Sprintf("relay.routes[%d]", i)
		switch j, dup := names[rt.Name]; {
		case !routeName.MatchString(rt.Name):
			add(key+".name", "must be 1-64 letters, digits, '-' or '_', starting with a letter or digit")
		case dup:
			add(key+".name", "%q is also the name of relay.routes[%d]", rt.Name, j)
		default:
			names[rt.Name] = i
		}
		m := rt.Match
		if m.Method != "*" && (!httpMethod.MatchString(m.Method) || m.Method == "CONNECT" || m.Method == "TRACE") {
			add(key+".match.method", "must be an upper-case HTTP method (not CONNECT or TRACE) or \"*\"")
		}
		if err := checkRoutePath(m.Path); err != nil {
			add(key+".match.path", "%v", err)
		} else {
			mk := m.Method + " " + m.Path
			if j, dup := matches[mk]; dup {
				add(key+".match", "duplicate of relay.routes[%d].match: the later route would never be reached", j)
			} else {
				matches[mk] = i
			}
		}
		if err := checkUpstream(rt.Upstream); err != nil {
			add(key+".upstream", "%v", err)
		}
		checkSection(add, key+".request", rt.Request)
		checkSection(add, key+".response", rt.Response)
	}
	return out
}

func checkRoutePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("must be set: an exact path or a prefix ending in /*")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("must start with /")
	case strings.Contains(strings.TrimSuffix(p, "/*"), "*"):
		return fmt.Errorf("only a final /* may be a wildcard")
	case strings.ContainsAny(p, "?#%\\ \t") || strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("must be a plain path (no query, fragment, escapes, backslashes or spaces)")
	case strings.Contains(p, "//") || strings.Contains(p+"/", "/./") || strings.Contains(p+"/", "/../"):
		return fmt.Errorf("must be a clean path (no //, . or .. segments)")
	}
	return nil
}

func checkUpstream(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || s == "":
		return fmt.Errorf("must be an http:// or https:// URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("must be an http:// or https:// URL")
	case u.Hostname() == "":
		return fmt.Errorf("must have a host")
	case u.User != nil:
		return fmt.Errorf("must not contain credentials")
	case u.Path != "" && u.Path != "/" || u.RawPath != "":
		return fmt.Errorf("must be scheme://host[:port] only: the request's path is kept")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return fmt.Errorf("must not have a query or fragment")
	}
	if p := u.Port(); p != "" {
		if err := checkAddr(net.JoinHostPort(u.Hostname(), p)); err != nil {
			return err
		}
	}
	return nil
}

func checkSection(add func(string, string, ...any), key string, s RelaySection) {
	seen := map[string]string{}
	field := func(k string, f RelayField) bool {
		p, err := fieldpath.Parse(f.Field)
		if err != nil {
			add(k+".field", "%v", err)
			return false
		}
		canon := strings.ToLower(p.String()) // names match without case
		if prev, dup := seen[canon]; dup {
			add(k+".field", "%q is also %s: a field is changed once per section", f.Field, prev)
			return false
		}
		seen[canon] = k
		return true
	}
	for i, f := range s.Tokenize {
		k := fmt.Sprintf("%s.tokenize[%d]", key, i)
		field(k, f)
		if !slices.Contains(RelayTokenTypes(), f.Type) {
			add(k+".type", "%q is not a token type (want one of %s)", printable(f.Type), strings.Join(RelayTokenTypes(), ", "))
		}
		if f.Mode != "" && !slices.Contains(RelayTokenModes(), f.Mode) {
			add(k+".mode", "%q is not a mode (want one of %s)", printable(f.Mode), strings.Join(RelayTokenModes(), ", "))
		}
		if f.Masker != "" {
			add(k+".masker", "is only for mask fields")
		}
	}
	for i, f := range s.Detokenize {
		k := fmt.Sprintf("%s.detokenize[%d]", key, i)
		field(k, f)
		if f.Type != "" || f.Mode != "" || f.Masker != "" {
			add(k, "takes only field: a token names its own type")
		}
	}
	for i, f := range s.Mask {
		k := fmt.Sprintf("%s.mask[%d]", key, i)
		field(k, f)
		if _, err := mask.Parse(f.Masker); err != nil {
			add(k+".masker", "%q is not a masker (card, email, phone, ssn, name, redact, hash, partial(first,last,char))", printable(f.Masker))
		}
		if f.Type != "" || f.Mode != "" {
			add(k, "takes only field and masker")
		}
	}
}

// sameAddr reports whether two listen addresses are the same fixed
// address (port 0 picks a free port: never the same).
func sameAddr(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa == "0" || pa != pb {
		return false
	}
	return ha == hb || ha == "" || hb == "" || ha == "0.0.0.0" || hb == "0.0.0.0" || ha == "::" || hb == "::"
}

func cloneRoutes(rs []RelayRoute) []RelayRoute {
	if rs == nil {
		return nil
	}
	out := slices.Clone(rs)
	for i := range out {
		for _, s := range []*RelaySection{&out[i].Request, &out[i].Response} {
			s.Tokenize, s.Detokenize, s.Mask = slices.Clone(s.Tokenize), slices.Clone(s.Detokenize), slices.Clone(s.Mask)
		}
	}
	return out
}
