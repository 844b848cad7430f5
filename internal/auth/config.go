package auth

import "github.com/cofferhq/coffer/internal/config"

// ExternalFromConfig is the trusted external issuers' configuration as
// auth.external lists them.
func ExternalFromConfig(xs []config.ExternalIssuer) []ExternalConfig {
	ext := make([]ExternalConfig, 0, len(xs))
	for _, x := range xs {
		ext = append(ext, ExternalConfig{
			Issuer: x.Issuer, Audience: x.Audience, RolesClaim: x.RolesClaim, JWKSURL: x.JWKSURL,
			CAFile: x.CAFile, RoleMap: x.RoleMap, SubjectPrefix: x.EffectiveSubjectPrefix(),
			Algorithms: x.Algorithms, AttributeClaims: x.AttributeClaims, MFAACRValues: x.MFAACRValues,
			TokenTypes: x.TokenTypes, AllowMissingJTI: x.AllowMissingJTI,
		})
	}
	return ext
}
