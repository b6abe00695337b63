-- Messages: templates (with immutable versions), e-mail and SMS messages,
-- their send attempts, suppression lists, and the global event log that
-- carries message.status events (GET /v1/events and webhooks).

CREATE TABLE templates (
    id         TEXT PRIMARY KEY,
    code       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    channel    TEXT NOT NULL,
    -- inactive | active
    status     TEXT NOT NULL,
    -- The current version (template_versions).
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX templates_channel ON templates(channel, status);

-- Every version ever saved; a message names the version it was rendered from.
CREATE TABLE template_versions (
    template_id TEXT NOT NULL REFERENCES templates(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    -- JSON: [{"key", "required", "default"}]
    variables   TEXT NOT NULL,
    -- JSON: the channel's parts (src/message/template.rs, TemplateParts)
    parts       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (template_id, version)
);

CREATE TABLE messages (
    id               TEXT COLLATE "C" PRIMARY KEY,
    -- email | sms
    channel          TEXT NOT NULL,
    -- queued | sending | sent | delivered | bounced | failed | cancelled
    status           TEXT NOT NULL,
    -- Why it is failed/cancelled/bounced (suppressed, retries_exhausted, ...).
    reason           TEXT,
    -- The first recipient (lower-cased e-mail address or E.164), for filters.
    recipient        TEXT NOT NULL,
    -- JSON: the accepted request (addresses, template and variables or raw
    -- content, category, send window); re-rendered on PATCH.
    request          TEXT NOT NULL,
    -- JSON: what is sent (subject and bodies, or the SMS body with its
    -- encoding and segments).
    rendered         TEXT NOT NULL,
    template_id      TEXT,
    template_version BIGINT,
    idempotency_key  TEXT UNIQUE,
    -- SHA-256 of the request, to refuse a reused key with another body.
    request_hash     TEXT,
    -- The peer's id (SMPP message_id), to match delivery reports.
    provider_id      TEXT,
    -- E-mail: the Message-ID header value.
    rfc_message_id   TEXT,
    max_retries      BIGINT NOT NULL,
    -- Sends started (attempt rows).
    tries            BIGINT NOT NULL DEFAULT 0,
    -- When the message may be sent (scheduled_at, a retry's backoff, the
    -- send window's opening).
    due_at           BIGINT NOT NULL,
    -- The node sending it, until lease_expires_at (status sending).
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    sent_at          BIGINT,
    final_at         BIGINT
);
CREATE INDEX messages_due ON messages(due_at) WHERE status = 'queued';
CREATE INDEX messages_sending ON messages(lease_expires_at) WHERE status = 'sending';
CREATE INDEX messages_provider ON messages(channel, provider_id) WHERE provider_id IS NOT NULL;
CREATE INDEX messages_recipient ON messages(recipient);
CREATE INDEX messages_template ON messages(template_id, status);

CREATE TABLE message_attempts (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    attempt    BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at   BIGINT,
    -- accepted | retry | bounced | failed | interrupted (NULL while sending)
    result     TEXT,
    -- The peer's reply: SMTP code, SMPP command_status, SIP status.
    code       TEXT,
    text       TEXT,
    PRIMARY KEY (message_id, attempt)
);

-- Addresses never sent to, per channel (email: lower-cased address; sms:
-- E.164). Bounces and one-click unsubscribes add to it.
CREATE TABLE suppressions (
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (channel, address)
);

-- The global event log (message events), numbered without gaps like a
-- campaign's: event_streams.seq is bumped by a transaction's event count
-- (holding the row's lock until commit) and the events go in as one page.
CREATE TABLE event_streams (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);
INSERT INTO event_streams (name, seq) VALUES ('global', 0);

CREATE TABLE global_event_pages (
    first_seq BIGINT NOT NULL,
    last_seq  BIGINT NOT NULL PRIMARY KEY,
    at        BIGINT NOT NULL,
    events    TEXT NOT NULL
);

-- Per webhook: the last global event delivered (or skipped by its filter).
CREATE TABLE webhook_global_cursors (
    webhook_id TEXT PRIMARY KEY REFERENCES webhooks(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL
);
