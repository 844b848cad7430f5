package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector.
type Metrics struct {
	reg *prometheus.Registry

	Requests        *prometheus.CounterVec
	Latency         *prometheus.HistogramVec
	AuthFailures    *prometheus.CounterVec
	Decisions       *prometheus.CounterVec
	Records         *prometheus.CounterVec
	TokenValues     *prometheus.CounterVec
	AuditWrites     prometheus.Counter
	AuditFailures   prometheus.Counter
	AuditLatency    prometheus.Histogram
	AuditBatch      prometheus.Histogram
	SecurityEvents  *prometheus.CounterVec
	KeyOps          *prometheus.CounterVec
	CertExpiry      prometheus.Gauge
	RewrapProcessed prometheus.Counter
	// KeysTooManyValues counts, once per key per automatic rotation check,
	// the data keys over keys.rotate_after_uses left unrotated because
	// they hold too many values for a rotation to help.
	KeysTooManyValues prometheus.Counter
	// QuotaRefusals counts requests refused by a per-principal quota, by
	// quota kind.
	QuotaRefusals *prometheus.CounterVec
	// AuditRowMismatches counts the stored audit rows read whose hash,
	// recomputed, is not the stored one, whose columns disagree with their
	// hashed body, or whose body does not decode: edits made in the
	// database outside Coffer.
	AuditRowMismatches prometheus.Counter
	// AuditArchiveFailures counts audit archive runs that failed (a full
	// or unreachable archive volume, a segment that did not read back):
	// pruning stops until a run succeeds; the database keeps growing.
	AuditArchiveFailures prometheus.Counter
	// AuditArchived counts events archived and pruned, by what.
	AuditArchived *prometheus.CounterVec
	// AuditWitnessLag is how long the oldest signed checkpoint not yet
	// taken by the audit witness has waited, in seconds (0 when none
	// waits or no witness is configured).
	AuditWitnessLag prometheus.Gauge
	// AuditWitnessFailures counts failed deliveries to the audit witness.
	AuditWitnessFailures prometheus.Counter
	// RelayRequests counts relayed calls by route (a configured route's
	// name, or "unmatched") and outcome (internal/relay's Outcomes).
	RelayRequests *prometheus.CounterVec
	// RelayLatency is the relay's latency by route, upstream included.
	RelayLatency *prometheus.HistogramVec
}

// New registers every collector, with Go runtime and process collectors,
// on a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_http_requests_total", Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "coffer_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_auth_failures_total", Help: "Failed authentications by method: credentials refused, and logins or token requests refused while locked out (accesslog.AuthFailure).",
		}, []string{"method"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_policy_decisions_total", Help: "Policy decisions by outcome (allow, deny).",
		}, []string{"outcome"}),
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_records_total", Help: "Records read or written, by operation.",
		}, []string{"op"}),
		TokenValues: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_token_values_total", Help: "Values tokenized or detokenized.",
		}, []string{"op"}),
		AuditWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coffer_audit_events_total", Help: "Audit events durably written.",
		}),
		AuditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coffer_audit_write_failures_total", Help: "Audit batches that failed to be written, and requests whose audit event was not confirmed otherwise (a required sink down, the writer closed or stuck); such requests fail closed.",
		}),
		AuditLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "coffer_audit_write_duration_seconds", Help: "Latency of one audit batch append.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		AuditBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "coffer_audit_batch_size", Help: "Events per audit group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		SecurityEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_security_events_total", Help: "Security events raised by kind.",
		}, []string{"kind"}),
		KeyOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_key_operations_total",
			Help: "Key operations by kind (op: create, import, import_version, import_vault, configure, rotate, auto_rotate, retire, unretire, " +
				"destroy, delete, rewrap, erase_subject, rewrap_job, reindex_job) and outcome (ok; refused: the request was " +
				"refused, 4xx; error: it failed, 5xx or a failed background run).",
		}, []string{"op", "outcome"}),
		CertExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "coffer_tls_certificate_expiry_timestamp_seconds", Help: "When the server certificate expires (Unix time).",
		}),
		RewrapProcessed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coffer_rewrap_records_total", Help: "Records re-encrypted to the newest data key version.",
		}),
		KeysTooManyValues: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coffer_key_rotation_too_many_values_total",
			Help: "Data keys found over keys.rotate_after_uses but not rotated, once per key per automatic rotation check: " +
				"the key holds too many values for a rotation to help (split its collection or raise keys.rotate_after_uses).",
		}),
		QuotaRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_quota_refusals_total", Help: "Requests refused by a per-principal quota (limits.*_per_hour), by quota.",
		}, []string{"quota"}),
		AuditArchiveFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coffer_audit_archive_failures_total",
			Help: "Audit archive runs that failed (archive volume full or unreachable, a segment that did not read back verified); pruning waits.",
		}),
		AuditArchived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_audit_archive_events_total", Help: "Audit events archived to sealed segments, and pruned from the database, by op.",
		}, []string{"op"}),
		AuditRowMismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coffer_audit_row_mismatches_total",
			Help: "Stored audit rows read whose hash, recomputed from their columns and body, is not the stored one, whose columns disagree with their hashed body, or whose body does not decode: edits made in the database.",
		}),
		AuditWitnessLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "coffer_audit_witness_lag_seconds",
			Help: "How long the oldest signed audit checkpoint not yet taken by the witness has waited (0: none waits).",
		}),
		AuditWitnessFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coffer_audit_witness_failures_total",
			Help: "Failed deliveries of signed audit checkpoints to the witness.",
		}),
		RelayRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coffer_relay_requests_total",
			Help: "Calls to the relay by route and outcome (forwarded, refused, unreachable, timeout, bad_upstream, error, unmatched).",
		}, []string{"route", "outcome"}),
		RelayLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "coffer_relay_request_duration_seconds", Help: "Latency of relayed calls by route, the upstream's time included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
	}
	reg.MustRegister(m.Requests, m.Latency, m.AuthFailures, m.Decisions, m.Records, m.TokenValues,
		m.AuditWrites, m.AuditFailures, m.AuditLatency, m.AuditBatch, m.SecurityEvents, m.KeyOps,
		m.CertExpiry, m.RewrapProcessed, m.KeysTooManyValues, m.QuotaRefusals,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(m.AuditArchiveFailures, m.AuditArchived)
	reg.MustRegister(m.AuditRowMismatches, m.AuditWitnessLag, m.AuditWitnessFailures, m.RelayRequests, m.RelayLatency)
	return m
}

// Registry returns the registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRequest records one finished HTTP request.
func (m *Metrics) ObserveRequest(route string, status int, d time.Duration) {
	m.Requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.Latency.WithLabelValues(route).Observe(d.Seconds())
}
