package doctor

import (
	"slices"
	"testing"

	"github.com/cofferhq/coffer/internal/config"
)

func TestCheckRelay(t *testing.T) {
	route := func(name, upstream string, detok bool) config.RelayRoute {
		r := config.RelayRoute{Name: name, Match: config.RelayMatch{Method: "POST", Path: "/" + name}, Upstream: upstream}
		if detok {
			r.Request.Detokenize = []config.RelayField{{Field: "card"}}
		}
		return r
	}
	tests := []struct {
		name   string
		listen string
		routes []config.RelayRoute
		want   []string
	}{
		{"off is fine", "", nil, []string{}},
		{"loopback with local and https upstreams is fine", "127.0.0.1:8444",
			[]config.RelayRoute{route("a", "http://127.0.0.1:9000", true), route("b", "https://pay.example", true)}, []string{}},
		{"beyond loopback is medium", "0.0.0.0:8444", []config.RelayRoute{route("a", "https://pay.example", false)}, []string{"medium relay.exposed"}},
		{"plain http beyond loopback is low", "127.0.0.1:8444", []config.RelayRoute{route("a", "http://10.0.0.5", false)}, []string{"low relay.plain_http_upstream"}},
		{"values over plain http are high", "127.0.0.1:8444", []config.RelayRoute{route("a", "http://pay.example", true)}, []string{"high relay.plain_http_upstream"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tt.listen != "" {
				cfg.Relay = config.Relay{Listen: tt.listen, Client: "c", Routes: tt.routes}
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := ids(checkRelay(&state{cfg: cfg})); !slices.Equal(got, tt.want) {
				t.Fatalf("findings = %q, want %q", got, tt.want)
			}
		})
	}
}
