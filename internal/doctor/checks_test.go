package doctor

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/pki"
	"github.com/cofferhq/coffer/internal/policy"
)

// ids lists findings as "severity id".
func ids(fs []Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, string(f.Severity)+" "+f.ID)
	}
	slices.Sort(out)
	return out
}

func mustPolicy(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Load([]byte(src), policy.FormatYAML)
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

func TestAnalysePolicy(t *testing.T) {
	cols := []coffer.Collection{
		{Name: "customers", Fields: []coffer.Field{{Name: "email", Type: coffer.TypeEmail}, {Name: "ssn", Type: coffer.TypeSSN}}},
		{Name: "payments", Fields: []coffer.Field{{Name: "card_number", Type: coffer.TypeString}}},
		{Name: "notes", Fields: []coffer.Field{{Name: "text", Type: coffer.TypeString}}},
	}
	const mfaAdmin = "roles:\n  admin:\n    require_mfa: true\n    rules:\n      - resources: [\"*\"]\n        actions: [\"*\"]\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"admin with MFA is clean", mfaAdmin, []string{}},
		{"bootstrap policy: admin without MFA is high", "roles:\n  admin:\n    - resources: [\"*\"]\n      actions: [\"*\"]\n",
			[]string{"high policy.admin_without_mfa"}},
		{"admin action on everything counts as admin", "roles:\n  ops:\n    - resources: [\"*\"]\n      actions: [admin]\n",
			[]string{"high policy.admin_without_mfa", "medium policy.wildcard"}},
		{"wildcard resource outside admin is medium", mfaAdmin + "  support:\n    - resources: [\"*\"]\n      actions: [read]\n      fields: {ssn: deny, card_number: deny, \"*\": masked}\n",
			[]string{"medium policy.wildcard"}},
		{"wildcard action outside admin is medium", mfaAdmin + "  svc:\n    - resources: [\"tokens/card_number\"]\n      actions: [\"*\"]\n",
			[]string{"medium policy.wildcard"}},
		{"star plain on a collection with an SSN is medium", mfaAdmin + "  support:\n    - resources: [\"collections/customers\"]\n      actions: [read]\n      fields: {email: masked, \"*\": plain}\n",
			[]string{"medium policy.plain_sensitive"}},
		{"no fields shows every field plain", mfaAdmin + "  support:\n    - resources: [\"collections/customers\"]\n      actions: [search]\n",
			[]string{"medium policy.plain_sensitive"}},
		{"a field named card_number counts", mfaAdmin + "  billing:\n    - resources: [\"collections/pay*\"]\n      actions: [read]\n",
			[]string{"medium policy.plain_sensitive"}},
		{"SSN listed as masked is fine", mfaAdmin + "  support:\n    - resources: [\"collections/customers\"]\n      actions: [read]\n      fields: {ssn: masked, \"*\": plain}\n",
			[]string{}},
		{"star masked is fine", mfaAdmin + "  support:\n    - resources: [\"collections/customers\"]\n      actions: [read]\n      fields: {\"*\": masked}\n",
			[]string{}},
		{"collection without sensitive fields is fine", mfaAdmin + "  support:\n    - resources: [\"collections/notes\"]\n      actions: [read]\n",
			[]string{}},
		{"linkable card tokens without detokenize are low", mfaAdmin + "  svc:\n    - resources: [\"tokens/card_number\", \"tokens/email\"]\n      actions: [tokenize_linkable]\n",
			[]string{"low policy.linkable_tokens"}},
		{"linkable tokens with detokenize are fine", mfaAdmin + "  svc:\n    - resources: [\"tokens/card_number\"]\n      actions: [tokenize_linkable, detokenize]\n",
			[]string{}},
		{"linkable email tokens are fine", mfaAdmin + "  svc:\n    - resources: [\"tokens/email\"]\n      actions: [tokenize_linkable]\n",
			[]string{}},
		{"write-only rule shows nothing", mfaAdmin + "  intake:\n    - resources: [\"collections/customers\"]\n      actions: [create]\n",
			[]string{}},
		{"constant true condition is medium", mfaAdmin + "  customer:\n    - resources: [\"collections/notes\"]\n      actions: [read]\n      when: \"true\"\n",
			[]string{"medium policy.when_constant"}},
		{"owner condition is fine", mfaAdmin + "  customer:\n    - resources: [\"collections/notes\"]\n      actions: [read]\n      when: resource.owner == principal.id\n",
			[]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := analysePolicy(mustPolicy(t, tt.src), cols)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if got := ids(fs); !slices.Equal(got, want) {
				t.Fatalf("findings = %q, want %q", got, want)
			}
		})
	}
}

func TestAnalysePolicyDetailNamesRuleNotCondition(t *testing.T) {
	p := mustPolicy(t, "roles:\n  admin:\n    require_mfa: true\n    rules:\n      - resources: [\"*\"]\n        actions: [\"*\"]\n"+
		"  customer:\n    - resources: [\"collections/notes\"]\n      actions: [read]\n    - resources: [\"collections/notes\"]\n      actions: [read]\n      when: \"'secret-ish' == 'secret-ish'\"\n")
	fs, err := analysePolicy(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || !strings.Contains(fs[0].Detail, "customer[1]") || strings.Contains(fs[0].Detail, "secret-ish") {
		t.Fatalf("findings = %+v", fs)
	}
}

func TestAlwaysTrue(t *testing.T) {
	c, err := newConstChecker()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		src  string
		want bool
	}{
		{"true", true},
		{"1 == 1", true},
		{"!false", true},
		{"principal.mfa || true", true},
		{"'a' in ['a', 'b']", true},
		{"size('abc') > 2", true},
		{"false", false},
		{"1 == 2", false},
		{"principal.mfa", false},
		{"resource.owner == principal.id", false},
		{"principal.mfa && true", false},
		{"request.time < timestamp('2030-01-01T00:00:00Z')", false},
		{"ip(request.ip).family() == 4", false},
		{"1 / 0 == 1", false}, // an error, which denies
		{"not ( valid", false},
		{"'true'", false}, // a string, not a bool
	}
	for _, tt := range tests {
		if got := c.alwaysTrue(tt.src); got != tt.want {
			t.Errorf("alwaysTrue(%q) = %v, want %v", tt.src, got, tt.want)
		}
	}
}

func FuzzAlwaysTrue(f *testing.F) {
	for _, s := range []string{"true", "1 == 1", "principal.mfa || true", "resource.owner == principal.id", "[1,2].all(x, x > 0)"} {
		f.Add(s)
	}
	c, err := newConstChecker()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src string) {
		a, b := c.alwaysTrue(src), c.alwaysTrue(src)
		if a != b {
			t.Fatalf("alwaysTrue(%q) not deterministic", src)
		}
	})
}

// testConfig loads defaults for a fresh directory and applies settings.
func testConfig(t testing.TB, kv ...string) *config.Config {
	t.Helper()
	cfg, err := config.Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if err := cfg.Set(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestCheckDSN(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	t.Setenv("PGSSLROOTCERT", "")
	tests := []struct {
		name string
		dsn  string
		want []string
	}{
		{"disable to a remote host is high", "postgres://coffer:s3cretpw@db.example.com:5432/coffer?sslmode=disable", []string{"high database.sslmode"}},
		{"allow to a remote host is high", "postgres://coffer:s3cretpw@db.example.com/coffer?sslmode=allow", []string{"high database.sslmode"}},
		{"default prefer to a remote host is medium", "postgres://coffer:s3cretpw@db.example.com/coffer", []string{"medium database.sslmode"}},
		{"require to a remote host is low", "postgres://coffer:s3cretpw@10.0.0.5/coffer?sslmode=require", []string{"low database.sslmode"}},
		{"verify-full is fine", "postgres://coffer:s3cretpw@db.example.com/coffer?sslmode=verify-full", []string{}},
		{"disable to loopback is fine", "postgres://coffer:s3cretpw@127.0.0.1:5432/coffer?sslmode=disable", []string{}},
		{"disable to localhost is fine", "postgres://coffer:s3cretpw@localhost/coffer?sslmode=disable", []string{}},
		{"disable over a Unix socket is fine", "postgres:///coffer?host=/var/run/postgresql&sslmode=disable", []string{}},
		{"disable to any remote host of several is high", "postgres://coffer:s3cretpw@127.0.0.1,db.example.com/coffer?sslmode=disable", []string{"high database.sslmode"}},
		{"SQLite is not checked", "", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "database_url", tt.dsn)
			fs := checkDSN(&state{cfg: cfg})
			if got := ids(fs); !slices.Equal(got, tt.want) {
				t.Fatalf("findings = %q, want %q (%+v)", got, tt.want, fs)
			}
			for _, f := range fs {
				if strings.Contains(f.Detail+f.Title+f.Fix, "s3cretpw") {
					t.Fatalf("finding holds the password: %+v", f)
				}
			}
		})
	}
}

func FuzzCheckDSN(f *testing.F) {
	f.Add("db.example.com", "s3cretpw", "disable")
	f.Add("127.0.0.1,h2", "pw pw", "prefer")
	f.Add("[::1]:5432", "", "verify-full")
	f.Fuzz(func(t *testing.T, host, pw, mode string) {
		u := &url.URL{Scheme: "postgres", User: url.UserPassword("coffer", pw), Host: host, Path: "/coffer",
			RawQuery: url.Values{"sslmode": {mode}}.Encode()}
		cfg, err := config.Load(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Set("database_url", u.String()) != nil || cfg.Validate() != nil {
			return
		}
		for _, fd := range checkDSN(&state{cfg: cfg}) {
			if len(pw) >= 6 && strings.Contains(fd.Detail+fd.Title, pw) && !strings.Contains(host, pw) {
				t.Fatalf("finding holds the password: %+v", fd)
			}
		}
	})
}

func TestAddrScope(t *testing.T) {
	tests := []struct {
		addr string
		want hostScope
	}{
		{"127.0.0.1:9464", scopeLoopback},
		{"[::1]:9464", scopeLoopback},
		{"localhost:9464", scopeLoopback},
		{"127.8.9.10:1", scopeLoopback},
		{"0.0.0.0:9464", scopeAll},
		{"[::]:9464", scopeAll},
		{":9464", scopeAll},
		{"10.1.2.3:9464", scopeNetwork},
		{"metrics.internal:9464", scopeNetwork},
	}
	for _, tt := range tests {
		if got := addrScope(tt.addr); got != tt.want {
			t.Errorf("addrScope(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestListenersAndLimits(t *testing.T) {
	tests := []struct {
		name string
		kv   []string
		want []string
	}{
		{"defaults are fine", nil, []string{}},
		{"metrics on a network address is medium", []string{"metrics_listen", "10.0.0.1:9464"}, []string{"medium metrics.exposed"}},
		{"metrics disabled is fine", []string{"metrics_listen", ""}, []string{}},
		{"API on every interface is info", []string{"listen", "0.0.0.0:8443"}, []string{"info listen.all_interfaces"}},
		{"API on every interface with client certs is fine", []string{"listen", "0.0.0.0:8443", "tls.client_certs", "true"}, []string{}},
		{"rate limit off is medium", []string{"limits.rate_limit", "0"}, []string{"medium limits.rate_limit_disabled"}},
		{"no linkable tokenize quota is medium", []string{"limits.tokenize_linkable_per_hour", "0"}, []string{"medium limits.tokenize_linkable_unlimited"}},
		{"SHA-1 imports are low", []string{"transit.byok.allow_sha1", "true"}, []string{"low transit.byok_sha1"}},
		{"a wrapping key that never rotates is low", []string{"transit.byok.wrapping_key_rotate_after", "0"}, []string{"low transit.byok_wrapping_key_never_rotates"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &state{cfg: testConfig(t, tt.kv...)}
			fs := append(append(checkListeners(st), checkRateLimit(st)...), checkBYOK(st)...)
			if got := ids(fs); !slices.Equal(got, tt.want) {
				t.Fatalf("findings = %q, want %q", got, tt.want)
			}
		})
	}
}

// A shamir check file without share commitments (written before them)
// is flagged: forged shares can delay unsealing until it is upgraded.
func TestShareCommitments(t *testing.T) {
	_, committed, err := keyprovider.SplitRootKey(rand.Reader, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		check []byte
		want  []string
	}{
		{"committed is fine", committed, []string{}},
		{"format 1 is medium", append([]byte{1, 2, 3}, make([]byte, 64)...), []string{"medium root_key.share_commitments"}},
		{"garbage is high", []byte("not a check"), []string{"high root_key.check_file"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "root-key.check")
			if err := os.WriteFile(path, tt.check, 0o600); err != nil {
				t.Fatal(err)
			}
			st := &state{cfg: testConfig(t, "root_key.provider", "shamir", "root_key.check_file", path)}
			if got := ids(checkRootKey(st)); !slices.Equal(got, tt.want) {
				t.Fatalf("findings = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRootKeyFromEnvInDevIsFine(t *testing.T) {
	st := &state{cfg: testConfig(t, "root_key.provider", "env", "dev", "true")}
	if fs := checkRootKey(st); len(fs) != 0 {
		t.Fatalf("findings = %+v", fs)
	}
	st = &state{cfg: testConfig(t, "root_key.provider", "env")}
	if got := ids(checkRootKey(st)); !slices.Equal(got, []string{"medium root_key.env_provider"}) {
		t.Fatalf("findings = %q", got)
	}
}

func TestExpiryFindings(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		left time.Duration
		want []string
	}{
		{-time.Second, []string{"high x"}},
		{0, []string{"high x"}},
		{13 * day, []string{"high x"}},
		{14*day - time.Second, []string{"high x"}},
		{14 * day, []string{"medium x"}},
		{29 * day, []string{"medium x"}},
		{30 * day, []string{}},
		{365 * day, []string{}},
	}
	for _, tt := range tests {
		if got := ids(expiryFindings("x", "it", "f", now.Add(tt.left), now)); !slices.Equal(got, tt.want) {
			t.Errorf("%v left: %q, want %q", tt.left, got, tt.want)
		}
	}
}

func TestWriteText(t *testing.T) {
	r := newReport([]Finding{
		{ID: "b.low", Severity: Low, Title: "low one"},
		{ID: "a.info", Severity: Info, Title: "fact", Detail: "x"},
		{ID: "z.high", Severity: High, Title: "bad", Detail: "line1\nline2", Fix: "fix it"},
		{ID: "m.medium", Severity: Medium, Title: "meh", Fix: "do"},
	})
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "HIGH z.high: bad (line1 line2) — fix it\n" +
		"MEDIUM m.medium: meh — do\n" +
		"LOW b.low: low one\n" +
		"INFO a.info: fact (x)\n"
	if b.String() != want {
		t.Fatalf("text =\n%s\nwant\n%s", b.String(), want)
	}
	if !r.High() || r.Count(Medium) != 1 {
		t.Fatalf("High = %v, Count(Medium) = %d", r.High(), r.Count(Medium))
	}
	b.Reset()
	if err := (Report{}).WriteText(&b); err != nil || b.String() != "ok: no findings\n" {
		t.Fatalf("empty report: %q, %v", b.String(), err)
	}
	b.Reset()
	if err := (Report{}).WriteJSON(&b); err != nil || b.String() != `{"high":false,"findings":[]}`+"\n" {
		t.Fatalf("empty JSON report: %q, %v", b.String(), err)
	}
}

func TestReportWithoutHigh(t *testing.T) {
	r := newReport([]Finding{{ID: "a", Severity: Medium}, {ID: "b", Severity: Low}, {ID: "c", Severity: Info}})
	if r.High() {
		t.Fatal("High() with no high finding")
	}
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || got["high"] != false {
		t.Fatalf("JSON: %s (%v)", b.String(), err)
	}
}

func TestSafeError(t *testing.T) {
	tests := []struct{ in, secret string }{
		{"connect postgres://coffer:hunter2@db/x: refused", "hunter2"},
		{"dial: host=db user=coffer password=hunter2 dbname=x", "hunter2"},
		{"PASSWORD=hunter2", "hunter2"},
	}
	for _, tt := range tests {
		if got := safeError(errors.New(tt.in)); strings.Contains(got, tt.secret) {
			t.Errorf("safeError(%q) = %q", tt.in, got)
		}
	}
	if got := safeError(errors.New(strings.Repeat("é", 400))); len(got) > 310 {
		t.Errorf("long error not cut: %d bytes", len(got))
	}
}

// tlsFixture is a CA and a server certificate issued by it, on disk.
type tlsFixture struct {
	caFile, certFile, keyFile string
}

func newTLSFixture(t testing.TB) tlsFixture {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, err := pki.CreateCA(rand.Reader, now, "doctor test CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer(rand.Reader, now, pki.DefaultHosts(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fx := tlsFixture{caFile: filepath.Join(dir, pki.CACertFile), certFile: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server-key.pem")}
	if err := pki.WriteKeyPair(fx.certFile, fx.keyFile, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return fx
}

// serveTLS accepts connections on a loopback port and completes (or
// fails) a handshake with cfg on each; it returns the https URL.
func serveTLS(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, cfg)
				_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
				_ = tc.Handshake()
				_ = tc.Close()
			}()
		}
	}()
	return "https://" + ln.Addr().String()
}

func TestProbeLive(t *testing.T) {
	fx := newTLSFixture(t)
	good, err := pki.ServerTLSConfig(fx.certFile, fx.keyFile, pki.TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(fx.certFile, fx.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var all []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		all = append(all, s.ID)
	}
	weak := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS10, CipherSuites: all} // #nosec G402 -- the weak server the probe must catch
	tls12 := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: pki.CipherSuites()}

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "https://" + closed.Addr().String()
	_ = closed.Close()

	tests := []struct {
		name string
		url  string
		ca   string
		want []string
	}{
		{"Coffer's own TLS: only the version", serveTLS(t, good), fx.caFile, []string{"info tls.live.version"}},
		{"TLS 1.0 and CBC accepted are high", serveTLS(t, weak), fx.caFile,
			[]string{"high tls.live.cbc", "high tls.live.old_protocol", "info tls.live.version"}},
		{"TLS 1.2 only is low", serveTLS(t, tls12), fx.caFile, []string{"info tls.live.version", "low tls.live.no_tls13"}},
		{"certificate from another CA is medium", serveTLS(t, good), "", []string{"info tls.live.version", "medium tls.live.untrusted"}},
		{"nothing listening is medium", closedURL, fx.caFile, []string{"medium tls.live.unreachable"}},
		{"not an https URL is medium", "http://127.0.0.1:1", fx.caFile, []string{"medium tls.live.unreachable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := probeLive(context.Background(), tt.url, tt.ca)
			if got := ids(fs); !slices.Equal(got, tt.want) {
				t.Fatalf("findings = %q, want %q (%+v)", got, tt.want, fs)
			}
		})
	}
}

func TestProbeLiveReportsVersion(t *testing.T) {
	fx := newTLSFixture(t)
	good, err := pki.ServerTLSConfig(fx.certFile, fx.keyFile, pki.TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fs := probeLive(context.Background(), serveTLS(t, good), fx.caFile)
	if len(fs) != 1 || fs[0].Title != "the server negotiates TLS 1.3" || !strings.Contains(fs[0].Detail, "TLS_AES") {
		t.Fatalf("findings = %+v", fs)
	}
}

func BenchmarkAnalysePolicy(b *testing.B) {
	p := mustPolicy(b, `roles:
  admin:
    require_mfa: true
    rules:
      - resources: ["*"]
        actions: ["*"]
  support:
    - resources: ["collections/customers"]
      actions: [read, search]
      fields: {email: masked, card_number: masked, ssn: deny, "*": plain}
  customer:
    - resources: ["collections/customers"]
      actions: [read, update]
      when: resource.owner == principal.id
      fields: {"*": plain}
  billing-service:
    - resources: ["tokens/card_number"]
      actions: [tokenize, detokenize]
`)
	cols := []coffer.Collection{{Name: "customers", Fields: []coffer.Field{{Name: "email", Type: coffer.TypeEmail}, {Name: "ssn", Type: coffer.TypeSSN}, {Name: "card_number", Type: coffer.TypeCardNumber}}}}
	for b.Loop() {
		if _, err := analysePolicy(p, cols); err != nil {
			b.Fatal(err)
		}
	}
}
