package main

import (
	"context"
	"fmt"

	"github.com/repute-mail/repute/internal/store"
)

// Sending grants: a user may send as their own addresses and the aliases that reach them;
// a grant adds an address, or every address of a local domain, without its mail (see
// internal/submit).

func cmdUserGrant(e *env, args []string) error {
	return grantOp(e, "user grant", args, (*store.DB).AddGrant, "may now send as")
}

func cmdUserRevoke(e *env, args []string) error {
	return grantOp(e, "user revoke", args, (*store.DB).DelGrant, "may no longer send as")
}

func grantOp(e *env, name string, args []string, op func(*store.DB, context.Context, string, string) error, done string) error {
	pos, err := parseFlags(stdFlags(e, name, false), args)
	if err != nil || len(pos) != 2 {
		return errUsage
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		if err := op(db, ctx, pos[0], pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s %s %s\n", pos[0], done, pos[1])
		return nil
	})
}

func cmdUserGrants(e *env, args []string) error {
	return listing(e, "user grants", args, (*store.DB).Grants, "USER\tMAY SEND AS\tGRANTED",
		func(g store.Grant) string { return g.User + "\t" + g.Address + "\t" + unix(g.Created) })
}
