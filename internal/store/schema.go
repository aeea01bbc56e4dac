package store

import (
	"context"
	"fmt"
)

// migrations are applied in order, each in its own transaction; PRAGMA user_version
// records how many have run. Never edit a released migration: append a new one.
var migrations = []string{
	// 1: accounts, mailboxes, messages, bodies, outbound queue.
	`
CREATE TABLE domains (
	id      INTEGER PRIMARY KEY,
	name    TEXT NOT NULL UNIQUE,      -- lower-case, ASCII (A-labels)
	created INTEGER NOT NULL           -- unix seconds
);

-- DKIM keys per domain (RFC 6376). The private key is PKCS#8 PEM. state: "active" keys
-- sign; "pending" keys wait until their DNS record is visible (rotation); "retired" keys no
-- longer sign but stay listed so that their record is kept published for a grace period.
CREATE TABLE dkim_keys (
	id          INTEGER PRIMARY KEY,
	domain_id   INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
	selector    TEXT NOT NULL,
	algorithm   TEXT NOT NULL,            -- "rsa" or "ed25519"
	private_pem BLOB NOT NULL,
	state       TEXT NOT NULL DEFAULT 'active',
	created     INTEGER NOT NULL,
	changed     INTEGER NOT NULL DEFAULT 0,  -- when the state last changed (retired: since when)
	UNIQUE (domain_id, selector)
);

CREATE TABLE users (
	id            INTEGER PRIMARY KEY,
	address       TEXT NOT NULL UNIQUE,  -- local@domain, domain lower-case
	domain_id     INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
	password_hash TEXT NOT NULL,
	created       INTEGER NOT NULL
);

-- An alias maps an address, or "@domain" for a catch-all, to one target address (local or
-- remote). Several rows with the same address expand to several targets.
CREATE TABLE aliases (
	id        INTEGER PRIMARY KEY,
	address   TEXT NOT NULL,
	target    TEXT NOT NULL,
	domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
	created   INTEGER NOT NULL,
	UNIQUE (address, target)
);

-- accounts_generation changes whenever domains, users or aliases do (also from another
-- process, such as the admin commands), so that the in-memory directory used to resolve
-- recipients knows when to reload.
CREATE TABLE generation (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	accounts INTEGER NOT NULL
);
INSERT INTO generation (id, accounts) VALUES (1, 0);
CREATE TRIGGER domains_gen_i AFTER INSERT ON domains BEGIN UPDATE generation SET accounts = accounts + 1; END;
CREATE TRIGGER domains_gen_d AFTER DELETE ON domains BEGIN UPDATE generation SET accounts = accounts + 1; END;
CREATE TRIGGER users_gen_i AFTER INSERT ON users BEGIN UPDATE generation SET accounts = accounts + 1; END;
CREATE TRIGGER users_gen_d AFTER DELETE ON users BEGIN UPDATE generation SET accounts = accounts + 1; END;
CREATE TRIGGER aliases_gen_i AFTER INSERT ON aliases BEGIN UPDATE generation SET accounts = accounts + 1; END;
CREATE TRIGGER aliases_gen_d AFTER DELETE ON aliases BEGIN UPDATE generation SET accounts = accounts + 1; END;

-- Bodies are shared by reference: a message delivered to several local users and queued for
-- remote ones is stored once. Triggers on messages and queue keep refs and delete a body
-- when nothing points to it any more.
CREATE TABLE blobs (
	id   INTEGER PRIMARY KEY,
	size INTEGER NOT NULL,
	refs INTEGER NOT NULL DEFAULT 0,
	data BLOB NOT NULL
);

-- The last UIDVALIDITY handed out, so that a mailbox deleted and created again never gets
-- a value a client may have cached (RFC 9051 §2.3.1.1), even within the same second.
CREATE TABLE uidvalidity (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	last INTEGER NOT NULL
);
INSERT INTO uidvalidity (id, last) VALUES (1, 0);

CREATE TABLE mailboxes (
	id          INTEGER PRIMARY KEY,
	user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name        TEXT NOT NULL,            -- full hierarchical name, "/" separated; "INBOX" exact
	special_use TEXT NOT NULL DEFAULT '', -- RFC 6154 attribute, e.g. "\Sent"
	uidvalidity INTEGER NOT NULL,
	uidnext     INTEGER NOT NULL DEFAULT 1,
	subscribed  INTEGER NOT NULL DEFAULT 1,
	UNIQUE (user_id, name)
);

CREATE TABLE messages (
	id            INTEGER PRIMARY KEY,
	mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid           INTEGER NOT NULL,
	blob_id       INTEGER NOT NULL REFERENCES blobs(id),
	flags         TEXT NOT NULL DEFAULT '',  -- space-separated, e.g. "\Seen \Flagged $Label"
	internal_date INTEGER NOT NULL,          -- unix seconds
	size          INTEGER NOT NULL,
	UNIQUE (mailbox_id, uid)
);

-- Deleting a body checks the foreign keys that point at it: without these indexes every
-- delivered or expunged message would scan both tables.
CREATE INDEX messages_blob ON messages (blob_id);

CREATE TRIGGER messages_ref AFTER INSERT ON messages BEGIN
	UPDATE blobs SET refs = refs + 1 WHERE id = NEW.blob_id;
END;
CREATE TRIGGER messages_unref AFTER DELETE ON messages BEGIN
	UPDATE blobs SET refs = refs - 1 WHERE id = OLD.blob_id;
	DELETE FROM blobs WHERE id = OLD.blob_id AND refs <= 0;
END;

-- Outbound queue: one row per (message, remote recipient). Delivery is a later step; the
-- rows written here are the durable hand-off.
CREATE TABLE queue (
	id           INTEGER PRIMARY KEY,
	blob_id      INTEGER NOT NULL REFERENCES blobs(id),
	msg_id       TEXT NOT NULL,           -- Repute's message id (also in events.log)
	mail_from    TEXT NOT NULL,           -- envelope sender; "" for the null sender
	rcpt         TEXT NOT NULL,
	domain       TEXT NOT NULL,           -- recipient domain, for grouping
	user_id      INTEGER,                 -- submitting user, if any
	created      INTEGER NOT NULL,        -- unix seconds
	next_attempt INTEGER NOT NULL,
	last_attempt INTEGER NOT NULL DEFAULT 0,
	attempts     INTEGER NOT NULL DEFAULT 0,
	state        TEXT NOT NULL DEFAULT 'queued',  -- queued, hold
	last_code    INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT NOT NULL DEFAULT '',        -- last reply or failure, as the admin sees it
	last_mx      TEXT NOT NULL DEFAULT '',
	warned       INTEGER NOT NULL DEFAULT 0,      -- delay notice sent
	requiretls   INTEGER NOT NULL DEFAULT 0,      -- RFC 8689
	lease        INTEGER NOT NULL DEFAULT 0       -- being delivered until (unix seconds); 0 = not
);
CREATE INDEX queue_next ON queue (state, next_attempt);
CREATE INDEX queue_domain ON queue (domain);
CREATE INDEX queue_blob ON queue (blob_id);

-- MTA-STS policies (RFC 8461 §5) as fetched, so that a policy in force survives restarts
-- and an attacker who blocks the policy fetch cannot downgrade delivery.
CREATE TABLE mtasts_policies (
	domain    TEXT PRIMARY KEY,
	record_id TEXT NOT NULL,
	policy    TEXT NOT NULL,
	expires   INTEGER NOT NULL,
	fetched   INTEGER NOT NULL
);

CREATE TRIGGER queue_ref AFTER INSERT ON queue BEGIN
	UPDATE blobs SET refs = refs + 1 WHERE id = NEW.blob_id;
END;
CREATE TRIGGER queue_unref AFTER DELETE ON queue BEGIN
	UPDATE blobs SET refs = refs - 1 WHERE id = OLD.blob_id;
	DELETE FROM blobs WHERE id = OLD.blob_id AND refs <= 0;
END;
`,
	// 2: suppression list and server secrets (bounce intelligence).
	`
-- Recipients a sending domain must not mail again: hard bounces, complaints,
-- unsubscribes and the admin's own entries. One row per (sending domain, recipient).
CREATE TABLE suppressions (
	sender_domain TEXT NOT NULL,             -- lower case
	address       TEXT NOT NULL,             -- recipient, lower case
	reason        TEXT NOT NULL,             -- bounce category, "complaint", "unsubscribe" or "manual"
	source        TEXT NOT NULL,             -- "delivery", "dsn", "arf", "unsubscribe", "admin"
	detail        TEXT NOT NULL DEFAULT '',  -- the reply text, report summary or note
	msg_id        TEXT NOT NULL DEFAULT '',  -- the message that caused it, if any
	created       INTEGER NOT NULL,          -- unix seconds
	PRIMARY KEY (sender_domain, address)
) WITHOUT ROWID;

-- Delivery outcomes counted per hour, sending domain and provider, for bounce and
-- complaint rates over rolling windows (kind: delivered, bounced, deferred, complaint;
-- category: the bounce category, "" otherwise).
CREATE TABLE outcome_counts (
	hour          INTEGER NOT NULL,  -- unix seconds / 3600
	sender_domain TEXT NOT NULL,
	provider      TEXT NOT NULL,
	kind          TEXT NOT NULL,
	category      TEXT NOT NULL DEFAULT '',
	n             INTEGER NOT NULL,
	PRIMARY KEY (hour, sender_domain, provider, kind, category)
) WITHOUT ROWID;

-- Server secrets generated on first use (e.g. the key of bounce address tags).
CREATE TABLE secrets (
	name    TEXT PRIMARY KEY,
	value   BLOB NOT NULL,
	created INTEGER NOT NULL
);
`,
	// 3: queue leases name the node that holds them, so that several nodes can share one
	// queue and a node's start-up clears only its own leases.
	`
ALTER TABLE queue ADD COLUMN lease_node TEXT NOT NULL DEFAULT '';
`,
	// 4: sending rights the admin grants beyond a user's own addresses and aliases.
	`
-- A grant lets a user send as an address ("local@domain") or as any address of a
-- domain ("@domain") without receiving its mail: an assistant sending for a manager, a
-- user who runs a domain's newsletters. Aliases already give their targets that right.
CREATE TABLE grants (
	user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	address   TEXT NOT NULL,                 -- lower-case key, or "@domain"
	domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
	created   INTEGER NOT NULL,
	PRIMARY KEY (user_id, address)
) WITHOUT ROWID;
CREATE INDEX grants_domain ON grants (domain_id);
CREATE TRIGGER grants_gen_i AFTER INSERT ON grants BEGIN UPDATE generation SET accounts = accounts + 1; END;
CREATE TRIGGER grants_gen_d AFTER DELETE ON grants BEGIN UPDATE generation SET accounts = accounts + 1; END;
`,
	// 5: a queued message's class. Transactional mail (what people send one by one) is
	// claimed and sent before bulk mail (newsletters, campaigns): it must never wait
	// behind a bulk backlog. The claim reads due entries of each class from this index.
	`
ALTER TABLE queue ADD COLUMN class TEXT NOT NULL DEFAULT 'transactional';
CREATE INDEX queue_due_class ON queue (state, class, next_attempt);
`,
	// 6: the deliverability engine's learnt state (rates, pauses, warm-up counts and
	// first-use dates), one JSON document, so that a restart forgets none of it.
	`
CREATE TABLE shaper_state (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	doc     TEXT NOT NULL,
	updated INTEGER NOT NULL
);
`,
}

func (db *DB) migrate(ctx context.Context) error {
	conn, err := db.wdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: connect: %w", err)
	}
	defer conn.Close()
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("store: read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("store: database schema version %d is newer than this program (%d): refusing to run", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store: migration %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migration %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migration %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("store: migration %d: %w", v+1, err)
		}
		db.log.Info("store: schema migrated", "version", v+1)
	}
	return nil
}
