package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/repute-mail/repute/internal/password"
	"github.com/repute-mail/repute/internal/smtp"
)

// Domain is a local domain: mail to it is delivered here.
type Domain struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Created int64  `json:"created"`
}

// User is a mailbox account.
type User struct {
	ID      int64  `json:"id"`
	Address string `json:"address"`
	Created int64  `json:"created"`
}

// Alias maps an address (or "@domain", a catch-all) to a target address.
type Alias struct {
	Address string `json:"address"`
	Target  string `json:"target"`
}

// DefaultMailboxes are created for every new user, with their RFC 6154 special-use
// attributes, so that every client finds the same folders.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{"INBOX", ""},
	{"Sent", `\Sent`},
	{"Drafts", `\Drafts`},
	{"Trash", `\Trash`},
	{"Junk", `\Junk`},
	{"Archive", `\Archive`},
}

// AddDomain makes name a local domain.
func (db *DB) AddDomain(ctx context.Context, name string) (Domain, error) {
	n, err := smtp.NormalizeDomain(name)
	if err != nil || strings.HasPrefix(n, "[") || !strings.Contains(n, ".") && n != "localhost" {
		return Domain{}, fmt.Errorf("invalid domain %q", name)
	}
	d := Domain{Name: n, Created: db.now().Unix()}
	err = db.writeAccounts(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`INSERT INTO domains (name, created) VALUES (?, ?)`, d.Name, d.Created)
		if IsConstraint(err) {
			return fmt.Errorf("domain %s: %w", n, ErrExists)
		}
		if err != nil {
			return err
		}
		d.ID, err = res.LastInsertId()
		return err
	})
	return d, err
}

// Domains lists the local domains by name.
func (db *DB) Domains(ctx context.Context) ([]Domain, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT id, name, created FROM domains ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	defer rows.Close()
	var out []Domain
	for rows.Next() {
		var d Domain
		if err := rows.Scan(&d.ID, &d.Name, &d.Created); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DelDomain removes a domain. It refuses while users or aliases still belong to it, so that
// no mailbox is ever deleted as a side effect.
func (db *DB) DelDomain(ctx context.Context, name string) error {
	n, err := smtp.NormalizeDomain(name)
	if err != nil {
		return fmt.Errorf("invalid domain %q", name)
	}
	return db.writeAccounts(ctx, func(tx *sql.Tx) error {
		var id int64
		if err := tx.QueryRow(`SELECT id FROM domains WHERE name = ?`, n).Scan(&id); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("domain %s: %w", n, ErrNotFound)
		} else if err != nil {
			return err
		}
		var users, aliases int
		tx.QueryRow(`SELECT count(*) FROM users WHERE domain_id = ?`, id).Scan(&users)
		tx.QueryRow(`SELECT count(*) FROM aliases WHERE domain_id = ?`, id).Scan(&aliases)
		if users+aliases > 0 {
			return fmt.Errorf("domain %s still has %d users and %d aliases: delete them first", n, users, aliases)
		}
		_, err := tx.Exec(`DELETE FROM domains WHERE id = ?`, id)
		return err
	})
}

// IsLocalDomain reports whether domain (normalized) is one of ours.
func (db *DB) IsLocalDomain(ctx context.Context, domain string) (bool, error) {
	d, err := db.dir(ctx)
	if err != nil {
		return false, err
	}
	return d.domains[domain], nil
}

func domainID(tx *sql.Tx, domain string) (int64, error) {
	var id int64
	err := tx.QueryRow(`SELECT id FROM domains WHERE name = ?`, domain).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("domain %s is not a local domain (add it with 'repute domain add %s'): %w", domain, domain, ErrNotFound)
	}
	return id, err
}

// AddUser creates an account with its default mailboxes.
func (db *DB) AddUser(ctx context.Context, address, pass string) (User, error) {
	a, err := smtp.ParseAddress(address)
	if err != nil || strings.HasPrefix(a.Domain, "[") {
		return User{}, fmt.Errorf("invalid address %q", address)
	}
	if pass == "" {
		return User{}, errors.New("empty password")
	}
	hash, err := password.Hash(pass)
	if err != nil {
		return User{}, err
	}
	u := User{Address: a.Key(), Created: db.now().Unix()}
	err = db.writeAccounts(ctx, func(tx *sql.Tx) error {
		did, err := domainID(tx, a.Domain)
		if err != nil {
			return err
		}
		res, err := tx.Exec(`INSERT INTO users (address, domain_id, password_hash, created) VALUES (?, ?, ?, ?)`,
			u.Address, did, hash, u.Created)
		if IsConstraint(err) {
			return fmt.Errorf("user %s: %w", u.Address, ErrExists)
		}
		if err != nil {
			return err
		}
		if u.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		for _, mb := range DefaultMailboxes {
			if _, err := CreateMailboxTx(tx, u.ID, mb.Name, mb.SpecialUse); err != nil {
				return err
			}
		}
		return nil
	})
	return u, err
}

// Users lists accounts by address.
func (db *DB) Users(ctx context.Context) ([]User, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT id, address, created FROM users ORDER BY address`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Address, &u.Created); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// UserByAddress finds an account.
func (db *DB) UserByAddress(ctx context.Context, address string) (User, error) {
	a, err := smtp.ParseAddress(address)
	if err != nil {
		return User{}, fmt.Errorf("user %s: %w", address, ErrNotFound)
	}
	var u User
	err = db.rdb.QueryRowContext(ctx, `SELECT id, address, created FROM users WHERE address = ?`, a.Key()).
		Scan(&u.ID, &u.Address, &u.Created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", a.Key(), ErrNotFound)
	}
	return u, err
}

// DelUser deletes an account with all its mailboxes and messages.
func (db *DB) DelUser(ctx context.Context, address string) error {
	u, err := db.UserByAddress(ctx, address)
	if err != nil {
		return err
	}
	return db.writeAccounts(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM users WHERE id = ?`, u.ID)
		return err
	})
}

// SetPassword replaces a user's password.
func (db *DB) SetPassword(ctx context.Context, address, pass string) error {
	if pass == "" {
		return errors.New("empty password")
	}
	u, err := db.UserByAddress(ctx, address)
	if err != nil {
		return err
	}
	hash, err := password.Hash(pass)
	if err != nil {
		return err
	}
	return db.writeAccounts(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE users SET password_hash = ? WHERE id = ?`, hash, u.ID)
		return err
	})
}

// ErrBadCredentials is returned by Authenticate for an unknown user or a wrong password.
var ErrBadCredentials = errors.New("invalid credentials")

// Authenticate checks a login. The username is the full address. An unknown user costs the
// same hashing time as a wrong password, so that probing for accounts learns nothing.
func (db *DB) Authenticate(ctx context.Context, username, pass string) (User, error) {
	var u User
	var hash string
	key := strings.ToLower(strings.TrimSpace(username))
	if a, err := smtp.ParseAddress(username); err == nil {
		key = a.Key()
	}
	err := db.rstmt(qLogin).QueryRowContext(ctx, key).Scan(&u.ID, &u.Address, &u.Created, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		password.Verify(dummyHash, pass)
		return User{}, ErrBadCredentials
	}
	if err != nil {
		return User{}, fmt.Errorf("authenticate: %w", err)
	}
	if err := password.Verify(hash, pass); err != nil {
		if errors.Is(err, password.ErrMismatch) {
			return User{}, ErrBadCredentials
		}
		return User{}, fmt.Errorf("authenticate %s: %w", u.Address, err)
	}
	return u, nil
}

// dummyHash is verified against when the user does not exist (argon2id of a random string).
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4dvMRvh6P2yTmlI2JE4oTFdS1r2EN3mHnRzj8lA/ZWM"

// AddAlias adds targets to an alias address ("user@domain" or "@domain" for a catch-all).
// The alias's domain must be local; targets may be local or remote.
func (db *DB) AddAlias(ctx context.Context, address string, targets ...string) error {
	if len(targets) == 0 {
		return errors.New("alias needs at least one target")
	}
	key, domain, err := aliasKey(address)
	if err != nil {
		return err
	}
	var norm []string
	for _, t := range targets {
		a, err := smtp.ParseAddress(t)
		if err != nil {
			return fmt.Errorf("invalid alias target %q", t)
		}
		norm = append(norm, a.Key())
	}
	return db.writeAccounts(ctx, func(tx *sql.Tx) error {
		did, err := domainID(tx, domain)
		if err != nil {
			return err
		}
		for _, t := range norm {
			_, err := tx.Exec(`INSERT INTO aliases (address, target, domain_id, created) VALUES (?, ?, ?, ?)`,
				key, t, did, db.now().Unix())
			if IsConstraint(err) {
				return fmt.Errorf("alias %s -> %s: %w", key, t, ErrExists)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func aliasKey(address string) (key, domain string, err error) {
	if d, ok := strings.CutPrefix(strings.TrimSpace(address), "@"); ok {
		n, err := smtp.NormalizeDomain(d)
		if err != nil || strings.HasPrefix(n, "[") {
			return "", "", fmt.Errorf("invalid catch-all %q", address)
		}
		return "@" + n, n, nil
	}
	a, err := smtp.ParseAddress(address)
	if err != nil || strings.HasPrefix(a.Domain, "[") {
		return "", "", fmt.Errorf("invalid alias address %q", address)
	}
	return a.Key(), a.Domain, nil
}

// Aliases lists every alias pair.
func (db *DB) Aliases(ctx context.Context) ([]Alias, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT address, target FROM aliases ORDER BY address, target`)
	if err != nil {
		return nil, fmt.Errorf("list aliases: %w", err)
	}
	defer rows.Close()
	var out []Alias
	for rows.Next() {
		var a Alias
		if err := rows.Scan(&a.Address, &a.Target); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// DelAlias removes the given targets of an alias, or all of them when none are given.
func (db *DB) DelAlias(ctx context.Context, address string, targets ...string) error {
	key, _, err := aliasKey(address)
	if err != nil {
		return err
	}
	return db.writeAccounts(ctx, func(tx *sql.Tx) error {
		var n int64
		if len(targets) == 0 {
			res, err := tx.Exec(`DELETE FROM aliases WHERE address = ?`, key)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
		}
		for _, t := range targets {
			a, err := smtp.ParseAddress(t)
			if err != nil {
				return fmt.Errorf("invalid alias target %q", t)
			}
			res, err := tx.Exec(`DELETE FROM aliases WHERE address = ? AND target = ?`, key, a.Key())
			if err != nil {
				return err
			}
			m, _ := res.RowsAffected()
			n += m
		}
		if n == 0 {
			return fmt.Errorf("alias %s: %w", key, ErrNotFound)
		}
		return nil
	})
}

// Target is where mail for one recipient goes: a local user, or a remote address (an alias
// that forwards).
type Target struct {
	UserID  int64  // 0 for a remote target
	Address string // the user's address, or the remote address
}

// ErrNoSuchUser is returned by Resolve for a local domain with no matching user or alias.
var ErrNoSuchUser = errors.New("no such user")

// ErrNotLocal is returned by Resolve when the address's domain is not local.
var ErrNotLocal = errors.New("domain is not local")

const maxAliasDepth = 10

// Resolve expands a recipient address into delivery targets. Lookup order, for each address:
// an exact user, an exact alias, the same two without a "+tag" (plus-addressing), then the
// domain's catch-all. Alias targets are expanded again (up to 10 levels); the result has no
// duplicates. It reads the in-memory directory, never the database directly.
func (db *DB) Resolve(ctx context.Context, a smtp.Address) ([]Target, error) {
	return db.resolve(ctx, a, false)
}

// ResolveExplicit is Resolve without catch-alls, at any level: the targets that have a an
// address of their own, or an alias of it. It answers who may send as a: a catch-all
// takes mail for every address of its domain, but gives its owner none of them.
func (db *DB) ResolveExplicit(ctx context.Context, a smtp.Address) ([]Target, error) {
	return db.resolve(ctx, a, true)
}

func (db *DB) resolve(ctx context.Context, a smtp.Address, explicit bool) ([]Target, error) {
	d, err := db.dir(ctx)
	if err != nil {
		return nil, err
	}
	if !d.domains[a.Domain] {
		return nil, ErrNotLocal
	}
	r := resolver{dir: d, seen: map[string]bool{}, explicit: explicit}
	if err := r.resolve(a.Key(), 0); err != nil {
		return nil, err
	}
	if len(r.out) == 0 {
		return nil, ErrNoSuchUser
	}
	return r.out, nil
}

type resolver struct {
	dir      *directory
	seen     map[string]bool
	out      []Target
	explicit bool // skip catch-alls
}

func (r *resolver) resolve(key string, depth int) error {
	if depth > maxAliasDepth {
		return fmt.Errorf("alias expansion of %s deeper than %d levels (a loop?)", key, maxAliasDepth)
	}
	if r.seen[key] {
		return nil
	}
	r.seen[key] = true
	at := strings.LastIndexByte(key, '@')
	local, domain := key[:at], key[at+1:]
	if depth > 0 && !r.dir.domains[domain] { // an alias target may be remote: forward there
		r.out = append(r.out, Target{Address: key})
		return nil
	}
	candidates := []string{key}
	if plus := strings.IndexByte(local, '+'); plus > 0 {
		candidates = append(candidates, local[:plus]+"@"+domain)
	}
	for _, c := range candidates {
		if found, err := r.exact(c, depth); err != nil || found {
			return err
		}
	}
	found := false
	if !r.explicit {
		var err error
		if found, err = r.alias("@"+domain, depth); err != nil {
			return err
		}
	}
	if !found && depth > 0 {
		return fmt.Errorf("alias target %s: %w", key, ErrNoSuchUser)
	}
	return nil
}

func (r *resolver) exact(key string, depth int) (bool, error) {
	if id, ok := r.dir.users[key]; ok {
		for _, t := range r.out {
			if t.UserID == id {
				return true, nil
			}
		}
		r.out = append(r.out, Target{UserID: id, Address: key})
		return true, nil
	}
	return r.alias(key, depth)
}

func (r *resolver) alias(key string, depth int) (bool, error) {
	targets := r.dir.aliases[key]
	for _, t := range targets {
		if err := r.resolve(t, depth+1); err != nil {
			return true, err
		}
	}
	return len(targets) > 0, nil
}

// Grant is a user's right to send as an address, or as any address of a domain
// ("@domain"), that is not theirs by account or alias.
type Grant struct {
	User    string `json:"user"`
	Address string `json:"address"`
	Created int64  `json:"created"`
}

// AddGrant lets user send as address ("local@domain" or "@domain" for the whole domain).
// The domain must be local: only local domains' mail is signed here.
func (db *DB) AddGrant(ctx context.Context, user, address string) error {
	u, err := db.UserByAddress(ctx, user)
	if err != nil {
		return err
	}
	key, domain, err := aliasKey(address)
	if err != nil {
		return err
	}
	return db.writeAccounts(ctx, func(tx *sql.Tx) error {
		did, err := domainID(tx, domain)
		if err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO grants (user_id, address, domain_id, created) VALUES (?, ?, ?, ?)`,
			u.ID, key, did, db.now().Unix())
		if IsConstraint(err) {
			return fmt.Errorf("grant of %s to %s: %w", key, u.Address, ErrExists)
		}
		return err
	})
}

// DelGrant takes a grant back.
func (db *DB) DelGrant(ctx context.Context, user, address string) error {
	u, err := db.UserByAddress(ctx, user)
	if err != nil {
		return err
	}
	key, _, err := aliasKey(address)
	if err != nil {
		return err
	}
	return db.writeAccounts(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM grants WHERE user_id = ? AND address = ?`, u.ID, key)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("grant of %s to %s: %w", key, u.Address, ErrNotFound)
		}
		return nil
	})
}

// Grants lists every grant by user and address.
func (db *DB) Grants(ctx context.Context) ([]Grant, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT u.address, g.address, g.created FROM grants g
		JOIN users u ON u.id = g.user_id ORDER BY u.address, g.address`)
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		var g Grant
		if err := rows.Scan(&g.User, &g.Address, &g.Created); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// UserGrants returns what a user was granted to send as ("local@domain", "@domain"). It
// reads the in-memory directory, like Resolve.
func (db *DB) UserGrants(ctx context.Context, userID int64) ([]string, error) {
	d, err := db.dir(ctx)
	if err != nil {
		return nil, err
	}
	return d.grants[userID], nil
}
