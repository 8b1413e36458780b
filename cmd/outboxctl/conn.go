package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql" // driver "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx" (--driver pgx)
	_ "github.com/lib/pq"              // driver "postgres" (--driver pq)
	_ "modernc.org/sqlite"             // driver "sqlite"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// connFlags say which database to open.
type connFlags struct {
	dialect string
	dsn     string
	prefix  string
	driver  string
	timeout time.Duration
}

func (f *connFlags) defaults(getenv func(string) string) {
	f.dialect = getenv("OUTBOX_DIALECT")
	f.dsn = getenv("OUTBOX_DSN")
	f.prefix = getenv("OUTBOX_PREFIX")
	if f.prefix == "" {
		f.prefix = migrations.DefaultPrefix
	}
	f.driver = "pq"
	f.timeout = 30 * time.Second
}

// register adds the connection flags to fs, defaulting to the values
// already in f (so flags given before the command carry over).
func (f *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dialect, "dialect", f.dialect, "postgres, mysql or sqlite ($OUTBOX_DIALECT)")
	fs.StringVar(&f.dsn, "dsn", f.dsn, "data source name; for sqlite a file path or file: URI ($OUTBOX_DSN)")
	fs.StringVar(&f.prefix, "prefix", f.prefix, "table prefix ($OUTBOX_PREFIX)")
	fs.StringVar(&f.driver, "driver", f.driver, "PostgreSQL driver: pq or pgx")
	fs.DurationVar(&f.timeout, "timeout", f.timeout, "time limit of the command")
}

// schemaDialect is what every built-in dialect implements.
type schemaDialect interface {
	dialect.Dialect
	dialect.Schema
}

// session is an open database with its dialect and an Outbox over it.
type session struct {
	db *sql.DB
	d  schemaDialect
	o  *outbox.Outbox
}

func (s *session) Close() { _ = s.db.Close() }

// open connects, checks the database kind and, unless forMigrate, that the
// schema is migrated.
func (c *cli) open(ctx context.Context, forMigrate bool) (*session, error) {
	f := c.conn
	if f.dialect == "" {
		return nil, exitf(exitUsage, "no dialect: pass --dialect postgres|mysql|sqlite or set OUTBOX_DIALECT")
	}
	if f.dsn == "" {
		return nil, exitf(exitUsage, "no DSN: pass --dsn or set OUTBOX_DSN")
	}
	if !migrations.ValidPrefix(f.prefix) {
		return nil, exitf(exitUsage, "invalid --prefix %q: 1-32 lowercase letters, digits and underscores, starting with a letter", f.prefix)
	}
	var (
		d          schemaDialect
		driver     string
		dsn        = f.dsn
		notMissing error
	)
	switch f.dialect {
	case "postgres", "postgresql":
		d = postgres.New(postgres.WithPrefix(f.prefix))
		switch f.driver {
		case "pq", "":
			driver = "postgres"
		case "pgx":
			driver = "pgx"
		default:
			return nil, exitf(exitUsage, "unknown --driver %q: pq or pgx", f.driver)
		}
	case "mysql", "mariadb":
		d, driver = mysql.New(mysql.WithPrefix(f.prefix)), "mysql"
	case "sqlite", "sqlite3":
		d, driver = sqlite.New(sqlite.WithPrefix(f.prefix)), "sqlite"
		dsn, notMissing = sqliteDSN(f.dsn, forMigrate)
		if notMissing != nil {
			return nil, &exitError{code: exitConnect, err: notMissing}
		}
	default:
		return nil, exitf(exitUsage, "unknown --dialect %q: postgres, mysql or sqlite", f.dialect)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, exitf(exitConnect, "open %s: %v", f.dialect, err)
	}
	s := &session{db: db, d: d}
	if err := db.PingContext(ctx); err != nil {
		s.Close()
		return nil, exitf(exitConnect, "connect to %s: %v", f.dialect, err)
	}
	if err := d.CheckDatabase(ctx, db); err != nil {
		s.Close()
		return nil, exitf(exitConnect, "%v", err)
	}
	if !forMigrate {
		if err := migrations.Check(ctx, db, d); err != nil {
			s.Close()
			if errors.Is(err, migrations.ErrNotMigrated) {
				return nil, exitf(exitNotMigrated, "%v: run outboxctl migrate", err)
			}
			return nil, err
		}
	}
	// Logs of the library go to stderr, warnings and up only.
	logger := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	o, err := outbox.New(db, d, outbox.Config{Logger: logger})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.o = o
	return s, nil
}

// sqliteDSN turns a path into the recommended DSN. Except for migrate, the
// file must exist (a typo must not create an empty database).
func sqliteDSN(dsn string, create bool) (string, error) {
	if strings.HasPrefix(dsn, "file:") || dsn == ":memory:" {
		return dsn, nil
	}
	if !create {
		if _, err := os.Stat(dsn); err != nil {
			return "", fmt.Errorf("sqlite database %s: %w", dsn, err)
		}
	}
	return "file:" + dsn + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate", nil
}

// runMigrate applies the schema.
func runMigrate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("migrate")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	s, err := c.open(ctx, true)
	if err != nil {
		return err
	}
	defer s.Close()
	before, err := migrations.Status(ctx, s.db, s.d)
	if err != nil {
		return err
	}
	if err := migrations.Up(ctx, s.db, s.d); err != nil {
		if errors.Is(err, migrations.ErrSchemaConflict) {
			return &exitError{code: exitConflict, err: err}
		}
		return err
	}
	after, err := migrations.Status(ctx, s.db, s.d)
	if err != nil {
		return err
	}
	if before.Current == after.Current {
		fmt.Fprintf(c.stdout, "schema %s: already at version %d\n", c.conn.prefix, after.Current)
		return nil
	}
	fmt.Fprintf(c.stdout, "schema %s: migrated from version %d to %d\n", c.conn.prefix, before.Current, after.Current)
	return nil
}
