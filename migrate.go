package main

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// migrate applies the embedded schema.sql (idempotent: it creates what is
// missing and converts tables in another collation, which serve never
// does) as the configured
// account, and returns. It is how the schema gets in place when the
// serving account may only read and write rows (SCHEMA_APPLY=false):
//
//	DB_USER=usersvc_migrate DB_PASSWORD=... usersvc migrate
//
// The account needs SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX
// and REFERENCES on the database (docs/deploy.md).
func migrate(ctx context.Context, cfg Config, stdout io.Writer) error {
	mc, err := mysqlConfig(cfg.dbSettings())
	if err != nil {
		return err
	}
	// Converting a large table can take minutes: no I/O deadline past the
	// dial; the command ends with its context (SIGINT, SIGTERM).
	mc.ReadTimeout, mc.WriteTimeout = 0, 0
	db, err := openDB(mc, cfg.dbSettings(), nil)
	if err != nil {
		return err
	}
	defer db.Close()
	store := NewStore(db, cfg.DBTimeout)
	store.convertOldTables = true
	if err := store.EnsureSchema(ctx); err != nil {
		var setup *DatabaseSetupError
		if errors.As(err, &setup) {
			hint := setupHints[setup.Reason]
			if setup.Reason == reasonMissingGrant {
				hint = "migrate needs SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX and REFERENCES on DB_NAME (docs/deploy.md)"
			}
			return fmt.Errorf("migrate: %s: %s: %w", setup.Reason, hint, err)
		}
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(stdout, "usersvc: schema in place in database %s at %s (as %s)\n", cfg.DBName, mc.Addr, cfg.DBUser)
	return nil
}
