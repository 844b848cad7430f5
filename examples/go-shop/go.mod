module github.com/cofferhq/coffer/examples/go-shop

go 1.27

require github.com/cofferhq/coffer v0.0.0

require golang.org/x/oauth2 v0.38.0 // indirect

replace github.com/cofferhq/coffer => ../..
