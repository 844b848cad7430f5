package vault

import "regexp"

var (
	nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	roleRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
)

// ValidName reports whether s may name a collection or a field.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ValidRoleName reports whether s may name a role.
func ValidRoleName(s string) bool { return roleRE.MatchString(s) }
