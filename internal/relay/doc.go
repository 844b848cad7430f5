// Package relay is Coffer's relay: an HTTPS reverse proxy in front of
// configured upstreams that tokenizes, detokenizes and masks listed
// fields of the JSON and form bodies passing through, so that an
// application (inbound routes) or a third party (outbound routes) sees
// tokens where its callers sent values, or values where it sent tokens,
// with no change to its code.
//
// It owns route matching, the body and query transformations, the
// forwarding (hop-by-hop headers, limits, streaming when a body is not
// transformed) and the mapping of every outcome to a status and an audit
// event. It acts as one configured client: the token service decides each
// (de)tokenization under that client's policy, exactly as for the API.
//
// It must never:
//   - forward a request to anything but its route's configured upstream
//     (the Host header and absolute request URLs are ignored, redirects are
//     passed back, never followed, and no proxy from the environment is
//     used);
//   - forward a listed field in clear: a body it cannot parse, a value it
//     cannot (de)tokenize, an encoding or media type it cannot read on a
//     route that transforms it, all refuse the request with nothing sent;
//   - answer before the call's audit event is durable, or write a value or
//     token into an audit event, a log line, an error or a metric label
//     (events carry the route, counts per field and the upstream status);
//   - skip certificate verification towards an https upstream.
package relay
