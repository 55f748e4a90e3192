-- Schema of the users service. Idempotent: it runs at every start-up of the
-- service and from the MySQL image's /docker-entrypoint-initdb.d.
-- It must run unchanged on MySQL 8.4 and MariaDB 10.11, so it names a
-- collation both have (utf8mb4_unicode_ci, not utf8mb4_0900_*), on every
-- table and every text column: left to the server, a table gets
-- utf8mb4_0900_ai_ci on MySQL 8.4 and the server's default on MariaDB,
-- and the first comparison across the two fails with error 1267
-- ("Illegal mix of collations") on one server and not the other.
-- Binary columns (BINARY, VARBINARY, BLOB) have no collation.
-- An existing table created otherwise is converted by `usersvc migrate`
-- (Store.convertCollations): CREATE TABLE IF NOT EXISTS alone leaves it
-- as it is.
--
-- username and email hold ASCII only (the service validates this), and their
-- case-insensitive collation makes the unique indexes the single judge of
-- uniqueness: with 'Alice' stored, 'alice' is a duplicate key.
CREATE TABLE IF NOT EXISTS users (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    username      VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    email         VARCHAR(254) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    password_hash VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    full_name     VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    role          ENUM('admin', 'user') CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL DEFAULT 'user',
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    -- Bumped by every update: the ETag, and what If-Match is checked against.
    version       BIGINT UNSIGNED NOT NULL DEFAULT 1,
    PRIMARY KEY (id),
    UNIQUE KEY users_username_unique (username),
    UNIQUE KEY users_email_unique (email),
    -- Finds the active admins (last-admin rules) and filters by role.
    KEY users_role_active (role, is_active),
    -- Sorting, keyset pagination and time filters. InnoDB appends the
    -- primary key to every secondary index, so each of these orders by
    -- (column, id), the tie-breaker every listing uses.
    KEY users_created_at (created_at),
    KEY users_updated_at (updated_at),
    KEY users_active (is_active)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Access tokens. Only the SHA-256 of a token is stored, so a copy of this
-- table lets no one in. Every replica reads the same rows, so a token
-- issued by one is accepted by all, and a revocation (a deleted row) holds
-- everywhere at once. Deleting a user deletes their tokens.
-- role is the holder's role, copied when the token is issued: a role
-- change or a deactivation deletes the user's tokens, so a token row
-- exists only for an active user with that role, and checking a token is
-- one row, not a join.
CREATE TABLE IF NOT EXISTS auth_tokens (
    token_hash BINARY(32) NOT NULL,
    user_id    BIGINT UNSIGNED NOT NULL,
    role       ENUM('admin', 'user') CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    expires_at DATETIME(6) NOT NULL,
    PRIMARY KEY (token_hash),
    KEY auth_tokens_user (user_id),
    KEY auth_tokens_expires (expires_at),
    CONSTRAINT auth_tokens_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The number of users, kept exact in the same transaction as every insert
-- and delete, so the unfiltered list's total costs a few rows, not a scan.
-- It is spread over slots (each write picks one) so concurrent creates do
-- not all queue on one row lock; the total is the sum.
CREATE TABLE IF NOT EXISTS user_counts (
    slot TINYINT UNSIGNED NOT NULL,
    n    BIGINT NOT NULL,
    PRIMARY KEY (slot)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Idempotency keys of POST /api/v1/users: the first request with a key
-- runs and its answer is kept here for 24 hours, so that a retry gets the
-- same answer instead of a second user. Keys belong to the caller (scope:
-- the user id, 0 for anonymous sign-ups). status is NULL while the first
-- request runs; claim is that request's random id, so a request whose
-- claim a retry took over (after it ran for a minute) can no longer record
-- or release anything.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope        BIGINT UNSIGNED NOT NULL,
    idem_key     VARBINARY(255) NOT NULL,
    request_hash BINARY(32) NOT NULL,
    claim        BINARY(16) NOT NULL,
    status       SMALLINT NULL,
    content_type VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    location     VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    etag         VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    body         MEDIUMBLOB NULL,
    created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    expires_at   DATETIME(6) NOT NULL,
    PRIMARY KEY (scope, idem_key),
    KEY idempotency_keys_expires (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The audit trail and change feed (docs/events.md). One row per change,
-- inserted in the transaction that makes the change, so an event exists
-- if and only if its change committed. No foreign key to users: the events
-- outlive the user. id is internal (on Galera, auto-increment ids are
-- neither contiguous nor in commit order); seq is the feed position,
-- NULL until the sequencer (store_events.go) numbers the committed row.
-- changes is JSON text made by the service: TEXT, not JSON, since
-- MariaDB's JSON is a LONGTEXT alias and MySQL's JSON has no collation.
-- The unique key on seq also finds the sequencer's unnumbered rows (seq IS
-- NULL, a range at its start). They are few, those committed since the
-- last round, so sorting them by id costs less than a second index that
-- every insert would have to maintain.
CREATE TABLE IF NOT EXISTS user_events (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    seq            BIGINT UNSIGNED NOT NULL,
    type           VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    occurred_at    DATETIME(6) NOT NULL,
    user_id        BIGINT UNSIGNED NOT NULL,
    actor_type     VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    actor_id       BIGINT UNSIGNED NULL,
    request_id     VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    client_address VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    changes        TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    PRIMARY KEY (id),
    UNIQUE KEY user_events_seq (seq),
    -- The feed's filters, each in feed order.
    KEY user_events_user_seq (user_id, seq),
    KEY user_events_actor_seq (actor_id, seq),
    KEY user_events_type_seq (type, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Events as their changes commit them, not yet numbered: each write adds
-- its events here, to a table with no index but its key, so recording an
-- event costs a change little; the sequencer moves them to user_events
-- with their seq, in batches (store_events.go).
CREATE TABLE IF NOT EXISTS user_events_pending (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    type           VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    occurred_at    DATETIME(6) NOT NULL,
    user_id        BIGINT UNSIGNED NOT NULL,
    actor_type     VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    actor_id       BIGINT UNSIGNED NULL,
    request_id     VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    client_address VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    changes        TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The one row the sequencer locks and writes: the last seq handed out, and
-- the highest seq the pruner deleted (every seq up to it is gone).
CREATE TABLE IF NOT EXISTS event_sequencer (
    id             TINYINT UNSIGNED NOT NULL,
    last_seq       BIGINT UNSIGNED NOT NULL,
    pruned_through BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

INSERT INTO event_sequencer (id, last_seq, pruned_through) VALUES (1, 0, 0)
    ON DUPLICATE KEY UPDATE id = id;

-- The row every removal of an active admin (demotion, deactivation,
-- deletion) writes, in its transaction. The last-admin rule reads other
-- admins' rows under locks it does not write; on a Galera cluster those
-- locks hold only on one node, so two nodes could each remove a different
-- admin, each seeing the other admin still there (write skew). Writing
-- this one row makes any two such transactions conflict: on one server the
-- second waits for the first, on Galera one fails certification and runs
-- again, and either way the second sees the truth.
CREATE TABLE IF NOT EXISTS admin_guard (
    id       TINYINT UNSIGNED NOT NULL,
    removals BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Webhook endpoints (docs/webhooks.md). secret signs every delivery
-- (Standard Webhooks: whsec_ and base64); after a rotation
-- previous_secret signs beside it until previous_until. cursor_seq is the
-- last feed seq delivered (or passed over: not of the endpoint's types);
-- attempt counts the failed attempts at the next one, retried from
-- next_attempt_at. The replica whose lease_token is set delivers, until
-- lease_until: it renews the lease before each attempt, and a replica
-- that dies loses it when it runs out.
CREATE TABLE IF NOT EXISTS webhooks (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    url             VARCHAR(2048) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    description     VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    event_types     VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    enabled         BOOLEAN NOT NULL,
    disabled_reason VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    secret          VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    previous_secret VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    previous_until  DATETIME(6) NULL,
    cursor_seq      BIGINT UNSIGNED NOT NULL,
    attempt         INT UNSIGNED NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(6) NULL,
    failing_since   DATETIME(6) NULL,
    last_error      VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    delivered_at    DATETIME(6) NULL,
    lease_token     BINARY(16) NULL,
    lease_until     DATETIME(6) NULL,
    created_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Every attempt to deliver to an endpoint (event_seq NULL: a test ping),
-- kept for webhookDeliveryRetention.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    webhook_id      BIGINT UNSIGNED NOT NULL,
    event_seq       BIGINT UNSIGNED NULL,
    attempt         INT UNSIGNED NOT NULL,
    status_code     SMALLINT UNSIGNED NULL,
    error           VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    latency_us      BIGINT UNSIGNED NOT NULL,
    attempted_at    DATETIME(6) NOT NULL,
    next_attempt_at DATETIME(6) NULL,
    PRIMARY KEY (id),
    KEY webhook_deliveries_webhook (webhook_id, id),
    KEY webhook_deliveries_time (attempted_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Provisioning tokens (docs/scim.md): long-lived bearer tokens an admin
-- creates for an identity provider, each with a scope ('scim': the
-- /scim/v2 routes and nothing else) and an optional expiry. Only the
-- SHA-256 of the secret is stored, as for sign-in tokens. A revoked token
-- keeps its row (revoked_at set), so the events it made still name it.
CREATE TABLE IF NOT EXISTS provisioning_tokens (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    token_hash BINARY(32) NOT NULL,
    name       VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    scope      VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    created_by BIGINT UNSIGNED NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    expires_at DATETIME(6) NULL,
    revoked_at DATETIME(6) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY provisioning_tokens_hash (token_hash),
    CONSTRAINT provisioning_tokens_creator_fk FOREIGN KEY (created_by) REFERENCES users (id) ON DELETE SET NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- A user's SCIM externalId, the identity provider's own id for it. A
-- table of its own, so no ALTER of users is needed on any server. Binary:
-- externalId is case-exact (RFC 7643 section 3.1), and a binary column
-- has no collation. Deleting the user deletes it.
CREATE TABLE IF NOT EXISTS user_external_ids (
    user_id     BIGINT UNSIGNED NOT NULL,
    external_id VARBINARY(255) NOT NULL,
    PRIMARY KEY (user_id),
    KEY user_external_ids_value (external_id),
    CONSTRAINT user_external_ids_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
