// Package store is Repute's durable state: domains, users, aliases, mailboxes, messages,
// message bodies and the outbound queue, in one SQL database.
//
// The embedded default is SQLite (modernc.org/sqlite, pure Go) in WAL mode with
// synchronous=FULL, so a committed transaction has been fsynced. The disk on a typical VPS
// does a few hundred fsyncs a second; to accept thousands of messages a second every write
// goes through one writer goroutine that runs whatever requests are waiting in a single
// transaction (group commit) and answers each only after that transaction is on disk. Each
// request runs inside its own SAVEPOINT, so one failing request never takes the others in
// its batch down with it. Readers use a separate connection pool and never wait for the
// writer (WAL snapshot isolation).
//
// Message bodies are stored in the database (table blobs), not in spool files: with files
// every message costs its own fsync of the file and of its directory, so acceptance would be
// bounded by the disk's fsync rate; in the database a whole batch of bodies shares the WAL's
// one fsync. docs/ARCHITECTURE.md records the measurement.
//
// The database holds DKIM private keys and password hashes, so Open creates it with mode
// 0600 whatever the umask (SQLite gives its -wal and -shm files the same mode) and takes
// group and other permissions away from an existing one, saying so in the log.
//
// All SQL lives in this package, behind methods named for what they do, so that a PostgreSQL
// implementation (multi-node, a later step) can provide the same methods.
//
// Upstream: internal/session (accepting mail), internal/imapsrv through internal/mailstore,
// cmd/repute (admin commands). Downstream: the database file only.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrNotFound is returned when a named domain, user, alias or mailbox does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when creating something that already exists.
var ErrExists = errors.New("already exists")

// ErrDiskFull is returned (wrapped) when the database cannot grow because the disk is full.
// The session maps it to 452 4.3.1.
var ErrDiskFull = errors.New("disk full")

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("store closed")

// Options configure Open. The zero value of every field but Path is usable.
type Options struct {
	Path     string       // database file
	Logger   *slog.Logger // defaults to slog.Default()
	MaxBatch int          // write requests per transaction; default 512
	Now      func() time.Time
}

// DB is an open store. Its methods are safe for concurrent use.
type DB struct {
	path   string
	log    *slog.Logger
	now    func() time.Time
	wdb    *sql.DB // exactly one connection, owned by the writer goroutine
	rdb    *sql.DB // read-only pool
	reqs   chan *writeReq
	done   chan struct{}
	closed chan struct{}
	once   sync.Once
	max    int
	wst    map[string]*sql.Stmt // prepared on the writer's connection
	rst    map[string]*sql.Stmt // prepared on the read pool

	dircache dirCache
}

type writeReq struct {
	ctx  context.Context
	fn   func(tx *sql.Tx) error
	errc chan error
}

func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "cache_size(-32768)") // 32 MiB of page cache per connection
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_txlock", "immediate") // take the write lock at BEGIN, not at the first write
	}
	return "file:" + filepath.ToSlash(path) + "?" + q.Encode()
}

// Open opens (creating if needed) the database at opts.Path, brings its schema up to date
// and starts the writer.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.Path == "" {
		return nil, errors.New("store: empty database path")
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o750); err != nil {
		return nil, fmt.Errorf("store: create directory: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := protectFiles(opts.Path, log); err != nil {
		return nil, err
	}
	db := &DB{
		path:   opts.Path,
		log:    log,
		now:    opts.Now,
		reqs:   make(chan *writeReq, 1024),
		done:   make(chan struct{}),
		closed: make(chan struct{}),
		max:    opts.MaxBatch,
	}
	if db.now == nil {
		db.now = time.Now
	}
	if db.max <= 0 {
		db.max = 512
	}
	var err error
	db.wdb, err = sql.Open("sqlite", dsn(opts.Path, false))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
	}
	db.wdb.SetMaxOpenConns(1)
	db.wdb.SetMaxIdleConns(1)
	db.wdb.SetConnMaxLifetime(0)
	db.wdb.SetConnMaxIdleTime(0)
	if err := db.migrate(ctx); err != nil {
		db.wdb.Close()
		return nil, err
	}
	db.rdb, err = sql.Open("sqlite", dsn(opts.Path, true))
	if err != nil {
		db.wdb.Close()
		return nil, fmt.Errorf("store: open readers %s: %w", opts.Path, err)
	}
	db.rdb.SetMaxOpenConns(8)
	db.rdb.SetMaxIdleConns(8)
	if db.wst, err = prepareAll(ctx, db.wdb, writeQueries); err == nil {
		db.rst, err = prepareAll(ctx, db.rdb, readQueries)
	}
	if err != nil {
		db.rdb.Close()
		db.wdb.Close()
		return nil, err
	}
	go db.writer()
	return db, nil
}

// fileMode is the mode of the database file and of the -wal and -shm files beside it: the
// database holds DKIM private keys and password hashes, for the server's user only.
const fileMode = 0o600

// protectFiles creates the database file at path with fileMode if it does not exist, and
// takes the group and other permissions away from it and its -wal and -shm files if they
// have any (logging each change). The file is created here, not by SQLite, so that its mode
// does not depend on the umask; SQLite creates the -wal and -shm files with the mode of the
// database file.
func protectFiles(path string, log *slog.Logger) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
	switch {
	case err == nil:
		err = f.Chmod(fileMode) // the umask may have taken bits away
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("store: create %s: %w", path, err)
		}
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		perm := fi.Mode().Perm()
		if perm&0o077 == 0 {
			continue
		}
		if err := os.Chmod(p, perm&^0o077); err != nil {
			return fmt.Errorf("store: %s is open to other users (mode %#o) and cannot be restricted: %w", p, perm, err)
		}
		log.Warn("store: database file was open to other users; restricted it to its owner",
			"file", p, "old_mode", fmt.Sprintf("%#o", perm), "new_mode", fmt.Sprintf("%#o", perm&^0o077))
	}
	return nil
}

// Close stops the writer after the requests already queued, and closes the database.
func (db *DB) Close() error {
	db.once.Do(func() { close(db.done) })
	<-db.closed
	for _, st := range db.wst {
		st.Close()
	}
	for _, st := range db.rst {
		st.Close()
	}
	err := db.rdb.Close()
	if werr := db.wdb.Close(); err == nil {
		err = werr
	}
	return err
}

// Path is the database file name.
func (db *DB) Path() string { return db.path }

// Now is the store's clock.
func (db *DB) Now() time.Time { return db.now() }

// Read is the read-only connection pool.
func (db *DB) Read() *sql.DB { return db.rdb }

// Write runs fn inside a transaction shared with other concurrent writers and returns once
// that transaction is durably committed (or has failed). fn must not keep tx, must not
// commit or roll back, and should be short: every other writer waits for it. If fn returns
// an error, only fn's own changes are rolled back and that error is returned.
func (db *DB) Write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	r := &writeReq{ctx: ctx, fn: fn, errc: make(chan error, 1)}
	select {
	case db.reqs <- r:
	case <-db.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the request may be committed: wait for the verdict even if ctx ends,
	// so that a caller never reports failure for something that was stored.
	return <-r.errc
}

func (db *DB) writer() {
	defer close(db.closed)
	batch := make([]*writeReq, 0, db.max)
	for {
		batch = batch[:0]
		select {
		case r := <-db.reqs:
			batch = append(batch, r)
		case <-db.done:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-db.reqs:
					db.runBatch([]*writeReq{r})
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < db.max {
			select {
			case r := <-db.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		db.runBatch(batch)
	}
}

func (db *DB) runBatch(batch []*writeReq) {
	errs := make([]error, len(batch))
	ctx := context.Background()
	tx, err := db.wdb.BeginTx(ctx, nil)
	if err != nil {
		err = classify(fmt.Errorf("store: begin: %w", err))
		for _, r := range batch {
			r.errc <- err
		}
		return
	}
	live := 0
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		errs[i] = db.runOne(tx, r.fn)
		if errs[i] == nil {
			live++
		}
	}
	if live == 0 {
		tx.Rollback()
	} else if err := tx.Commit(); err != nil {
		err = classify(fmt.Errorf("store: commit: %w", err))
		db.log.Error("store: group commit failed", "requests", len(batch), "err", err)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	for i, r := range batch {
		r.errc <- errs[i]
	}
}

func (db *DB) runOne(tx *sql.Tx, fn func(*sql.Tx) error) (err error) {
	if _, err := db.wstmt(tx, qSavepoint).Exec(); err != nil {
		return classify(fmt.Errorf("store: savepoint: %w", err))
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: panic in write: %v", p)
		}
		if err != nil {
			db.wstmt(tx, qRollbackTo).Exec()
			db.wstmt(tx, qRelease).Exec()
			err = classify(err)
			return
		}
		if _, rerr := db.wstmt(tx, qRelease).Exec(); rerr != nil {
			err = classify(fmt.Errorf("store: release: %w", rerr))
		}
	}()
	return fn(tx)
}

// classify marks SQLite's "disk full" and I/O errors with ErrDiskFull so callers can answer
// with a temporary error that says what is wrong.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL:
			return fmt.Errorf("%w: %w", ErrDiskFull, err)
		}
	}
	if strings.Contains(err.Error(), "no space left on device") {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return err
}

// IsConstraint reports whether err is a uniqueness or foreign-key violation.
func IsConstraint(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
	}
	return false
}
