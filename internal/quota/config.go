package quota

import "github.com/cofferhq/coffer/internal/config"

// FromConfig is the quotas' Config as the configuration's limits set them
// (limits.tokenize_per_hour, tokenize_linkable_per_hour, and per role).
func FromConfig(l config.Limits) Config {
	cfg := Config{
		Limits: map[string]int{Tokenize: l.TokenizePerHour, TokenizeLinkable: l.TokenizeLinkablePerHour},
		Roles:  map[string]map[string]int{},
	}
	for role, rl := range l.Roles {
		cfg.Roles[role] = map[string]int{Tokenize: rl.TokenizePerHour, TokenizeLinkable: rl.TokenizeLinkablePerHour}
	}
	return cfg
}
