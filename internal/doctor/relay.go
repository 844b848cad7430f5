package doctor

import (
	"context"
	"net/url"

	"github.com/cofferhq/coffer/internal/coffer"
)

// checkRelay flags a relay open beyond loopback (it does not authenticate
// its callers) and upstreams reached over plain HTTP beyond loopback.
func checkRelay(st *state) []Finding {
	r := st.cfg.Relay
	if r.Listen == "" {
		return nil
	}
	var out []Finding
	if addrScope(r.Listen) != scopeLoopback {
		out = append(out, Finding{
			ID: "relay.exposed", Severity: Medium,
			Title: "the relay listens beyond loopback; it does not authenticate its callers",
			Detail: "relay.listen is " + r.Listen + ": whoever reaches it uses its routes as the relay's client " +
				"(a route that detokenizes sends values to its upstream, or back to the caller)",
			Fix: "listen on the interface the callers use only, behind a firewall or an authenticating proxy, and give the relay's client only the token types its routes need",
		})
	}
	for _, rt := range r.Routes {
		u, err := url.Parse(rt.Upstream)
		if err != nil || u.Scheme != "http" || hostScopeOf(u.Hostname()) == scopeLoopback {
			continue
		}
		f := Finding{
			ID: "relay.plain_http_upstream", Severity: Low,
			Title:  "relay route " + rt.Name + " reaches its upstream over plain HTTP",
			Detail: "upstream " + u.Scheme + "://" + u.Host + " is beyond loopback: its traffic can be read and changed on the way",
			Fix:    "use an https:// upstream (its certificate is verified)",
		}
		if len(rt.Request.Detokenize) > 0 {
			f.Severity = High
			f.Detail += "; this route detokenizes, so values cross the network in clear"
		}
		out = append(out, f)
	}
	return out
}

// checkRelayClient flags a relay client that does not exist or is
// disabled: every relayed call is then refused (503).
func checkRelayClient(ctx context.Context, st *state) []Finding {
	id := st.cfg.Relay.Client
	if st.cfg.Relay.Listen == "" || id == "" {
		return nil
	}
	c, err := st.db.Client(ctx, id)
	switch {
	case coffer.ErrorCode(err) == coffer.ENOTFOUND || err == nil && c.Disabled:
		return []Finding{{
			ID: "relay.client_missing", Severity: High,
			Title:  "the relay's client does not exist or is disabled",
			Detail: "relay.client names " + id + ": every relayed call is refused (503)",
			Fix:    "create a client for the relay (POST /v1/clients) with a role granting only the token types its routes need, and name it in relay.client",
		}}
	case err != nil:
		return []Finding{unchecked("relay.client_missing", "the relay's client", err)}
	}
	return nil
}
