// Package envflag lets every flag of a command be set from the environment:
// with prefix APIKEYS_VERIFIER, -stale-if-error is APIKEYS_VERIFIER_STALE_IF_ERROR.
// A flag on the command line beats its variable. The mains of apikeys-verifier
// and apikeys-console read their flags through it, so the rule is written once.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// Name is the environment variable of flagName under prefix.
func Name(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse sets fs's flags from getenv (prefix_FLAG), then parses args over them.
// Every unreadable variable is reported, by name; arguments left after the
// flags are an error.
func Parse(fs *flag.FlagSet, prefix string, args []string, getenv func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := getenv(Name(prefix, f.Name)); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", Name(prefix, f.Name), err))
			}
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return nil
}
