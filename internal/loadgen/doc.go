// Package loadgen is Coffer's own load generator, the engine of
// `coffer bench`: it sets up fixtures on a running server (a collection
// and record, a transit key and a ciphertext), then drives scenarios
// (healthz, record read and create, tokenize one value, transit encrypt
// and decrypt of one item, a transit batch of N) over keep-alive HTTPS
// connections, one per worker, through a concurrency sweep with rounds
// interleaved, and reports per scenario and concurrency the request rate,
// latency percentiles and errors by status, as JSON and as an SVG plot.
//
// Two surfaces are driven: Coffer's own API, and the Vault transit API
// (/v1/transit/…, X-Vault-Token) that both Coffer's compatibility surface
// and HashiCorp Vault answer, so the same generator, connections and
// bodies measure both. It never logs or reports a token or a payload.
package loadgen
