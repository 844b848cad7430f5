module github.com/cofferhq/coffer/examples/go-shop

go 1.27

require github.com/cofferhq/coffer v0.0.0

require (
	github.com/tink-crypto/tink-go/v2 v2.9.0 // indirect
	golang.org/x/oauth2 v0.38.0 // indirect
)

replace github.com/cofferhq/coffer => ../..
