// Package testserver starts real Coffer servers for the end-to-end suite,
// the attack suite and the HTTPS benchmarks, all one way: coffer init into
// a temporary data directory (SQLite, or a fresh PostgreSQL schema), the
// configuration loaded as coffer serve loads it (environment overrides,
// then settings as flags), app.Open with a logger the test can scan and a
// clock it can move, and real TLS on a loopback port with the deployment's
// own CA. It hands out clients that trust that CA and check every answer
// against the OpenAPI document (openapitest): raw net/http ones, ones bound
// to a source address, and SDK clients (client/).
//
// It is test support only and must never be imported by non-test code or
// linked into a Coffer binary: it holds the bootstrap admin's secret in
// memory and turns off the checks a production deployment keeps (a
// PostgreSQL superuser may serve). It never listens on anything but a
// loopback address.
package testserver
