// Command coffer runs and administers a Coffer vault: init, serve, dev,
// migrate, version, audit verify, doctor. It holds flags, signals and exit
// codes; everything else lives in internal/app. It must never hold a use
// case of its own: a command parses flags, calls internal/app or the
// client, and prints the answer.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cofferhq/coffer/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env []string) int {
	return runIn(ctx, args, nil, stdout, stderr, env)
}

// runIn is run with stdin as the standard input (nil: the process's).
func runIn(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env []string) int {
	if stdin == nil {
		stdin = os.Stdin
	}
	root := newRoot(ctx, stdin, stdout, stderr, env)
	root.SetArgs(args)
	root.SetIn(stdin)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "coffer:", ue.Err)
		return 2
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "coffer:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "coffer:", err)
	return 1
}
