package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
)

func ExampleNewHandler() {
	text := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		// Drop the time so that the output is stable.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	})
	logger := slog.New(NewHandler(text, HandlerOptions{}))
	logger.Info("charged 4111 1111 1111 1111 for alice@example.com",
		"password", "hunter2",
		slog.Group("user", "ssn", "123-45-6789", "ip", "10.1.2.3", "note", "call +14155550123"),
	)
	// Output:
	// level=INFO msg="charged **** **** **** 1111 for a****@e******.com" password=[REDACTED] user.ssn=[REDACTED] user.ip=[IPV4] user.note="call +*******0123"
}

type stringer struct{}

func (stringer) String() string { return "card 4111111111111111" }

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("mail alice@example.com") }

type payload struct {
	Name  string
	Email string
}

func jsonLogger(opts HandlerOptions) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), opts)), &buf
}

func decode(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%v in %s", err, buf)
	}
	return m
}

func TestHandlerRedactsAttrs(t *testing.T) {
	logger, buf := jsonLogger(HandlerOptions{Mode: ModePlaceholder})
	logger.Info("login from 10.0.0.1",
		"Password", "hunter2",
		"X-Api-Key", "abc",
		"db_password", "pw",
		"Authorization", "Bearer "+jwtHS256,
		"email", "alice@example.com",
		"count", 42,
		"err", errors.New("bad card 4111111111111111"),
		"str", stringer{},
		"val", valuer{},
		"raw", []byte("ssn 123-45-6789"),
		"payload", payload{Name: "Ada", Email: "ada@example.com"},
		"clean", payload{Name: "Ada", Email: "none"},
		slog.Group("g", "token", "t0k", slog.Group("inner", "ip", "2001:db8::1")),
	)
	m := decode(t, buf)
	wants := map[string]any{
		"msg":           "login from [IPV4]",
		"Password":      Redacted,
		"X-Api-Key":     Redacted,
		"db_password":   Redacted,
		"Authorization": Redacted,
		"email":         "[EMAIL]",
		"count":         float64(42),
		"err":           "bad card [CARD_NUMBER]",
		"str":           "card [CARD_NUMBER]",
		"val":           "mail [EMAIL]",
		"raw":           "ssn [SSN]",
		"payload":       "{Name:Ada Email:[EMAIL]}",
	}
	for k, w := range wants {
		if m[k] != w {
			t.Errorf("%s = %#v, want %#v", k, m[k], w)
		}
	}
	if clean, ok := m["clean"].(map[string]any); !ok || clean["Email"] != "none" {
		t.Errorf("clean struct should keep its type, got %#v", m["clean"])
	}
	g, _ := m["g"].(map[string]any)
	inner, _ := g["inner"].(map[string]any)
	if g["token"] != Redacted || inner["ip"] != "[IPV6]" {
		t.Errorf("group = %#v", m["g"])
	}
	for _, secret := range []string{"hunter2", "4111111111111111", "alice@example.com", "123-45-6789", jwtHS256, "t0k", "2001:db8::1"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("output holds %q: %s", secret, buf)
		}
	}
}

func TestHandlerWithAttrsAndGroup(t *testing.T) {
	logger, buf := jsonLogger(HandlerOptions{})
	logger.With("secret", "s3cr3t", "user", "bob@example.org").
		WithGroup("req").
		With("client_secret", "cs").
		Info("hi", "ip", "192.168.0.1")
	m := decode(t, buf)
	if m["secret"] != Redacted || m["user"] != "b**@e******.org" {
		t.Errorf("WithAttrs not redacted: %s", buf)
	}
	req, _ := m["req"].(map[string]any)
	if req["client_secret"] != Redacted || req["ip"] != "[IPV4]" {
		t.Errorf("group attrs not redacted: %s", buf)
	}
}

func TestHandlerSensitiveKeysConfigurable(t *testing.T) {
	logger, buf := jsonLogger(HandlerOptions{SensitiveKeys: []string{"Customer-Name"}})
	logger.Info("m", "customer_name", "Ada", "password", "hunter2")
	m := decode(t, buf)
	if m["customer_name"] != Redacted {
		t.Errorf("custom key not redacted: %s", buf)
	}
	if m["password"] != "hunter2" {
		t.Errorf("a custom list replaces the default one: %s", buf)
	}

	logger, buf = jsonLogger(HandlerOptions{SensitiveKeys: []string{}})
	logger.Info("m", "password", "hunter2")
	if decode(t, buf)["password"] != "hunter2" {
		t.Errorf("an empty list should turn key matching off: %s", buf)
	}
}

func TestHandlerEnabledFollowsNext(t *testing.T) {
	var buf bytes.Buffer
	h := NewHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}), HandlerOptions{})
	if h.Enabled(t.Context(), slog.LevelInfo) || !h.Enabled(t.Context(), slog.LevelError) {
		t.Fatal("Enabled does not follow the next handler")
	}
}

func TestDefaultSensitiveKeysIsFresh(t *testing.T) {
	a := DefaultSensitiveKeys()
	a[0] = "changed"
	if DefaultSensitiveKeys()[0] == "changed" {
		t.Fatal("DefaultSensitiveKeys shares its slice")
	}
}

func BenchmarkHandler(b *testing.B) {
	var buf bytes.Buffer
	logger := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), HandlerOptions{}))
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		logger.Info("user signed in", "user", "alice@example.com", "ip", "10.20.30.40", "status", 200, "password", "x")
	}
}

// KeepTypes leaves the kept types alone in messages, values, errors and
// printed structs, and redacts everything else as before.
func TestHandlerKeepTypes(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), HandlerOptions{KeepTypes: []string{TypeIPv4, TypeIPv6}}))
	log.Info("listening on 127.0.0.1:8443 and [::1]:8443 for alice@example.com",
		"err", errors.New("dial tcp 10.0.0.5:5432: refused for card 4111111111111111"),
		"peer", struct{ Addr string }{"192.168.1.9"},
		"password", "10.9.9.9",
		"ip", "10.1.2.3")
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"msg":      "listening on 127.0.0.1:8443 and [::1]:8443 for a****@e******.com",
		"err":      "dial tcp 10.0.0.5:5432: refused for card ************1111",
		"peer":     map[string]any{"Addr": "192.168.1.9"},
		"password": Redacted,
		"ip":       "10.1.2.3",
	}
	for k, w := range want {
		if g, _ := json.Marshal(got[k]); string(g) != string(must(json.Marshal(w))) {
			t.Errorf("%s = %s, want %s", k, g, must(json.Marshal(w)))
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
