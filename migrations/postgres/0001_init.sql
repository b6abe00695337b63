-- herald schema, PostgreSQL. Timestamps are milliseconds since the Unix epoch (UTC).
-- Ids are UUIDv7 text. JSON columns hold validated documents.

-- outdials, outplans and agents: a name and a validated JSON document (spec).
CREATE TABLE outdials (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE targets (
    id                TEXT PRIMARY KEY,
    outdial_id        TEXT NOT NULL REFERENCES outdials(id) ON DELETE CASCADE,
    name              TEXT NOT NULL DEFAULT '',
    -- JSON array of {type, target, try_count_max?, try_count}; at most 5.
    destinations      TEXT NOT NULL,
    -- The first destination's target: duplicates within an outdial are refused.
    dest_key          TEXT NOT NULL,
    destination_index INTEGER NOT NULL DEFAULT 0,
    -- NULL: the outplan's try_count_max applies.
    try_count_max     INTEGER,
    try_count_current INTEGER NOT NULL DEFAULT 0,
    state             TEXT NOT NULL DEFAULT 'idle',
    next_attempt_at   BIGINT NOT NULL,
    not_before        BIGINT,
    expires_at        BIGINT,
    timezone          TEXT,
    variables         TEXT NOT NULL DEFAULT '{}',
    client_token      TEXT,
    last_outcome      TEXT,
    reason            TEXT,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX targets_outdial_dest ON targets(outdial_id, dest_key);
CREATE UNIQUE INDEX targets_outdial_token ON targets(outdial_id, client_token) WHERE client_token IS NOT NULL;
-- "due targets of outdial X": a range scan however large the list.
CREATE INDEX targets_due ON targets(outdial_id, next_attempt_at) WHERE state = 'idle';
CREATE INDEX targets_outdial_state ON targets(outdial_id, state, id);

CREATE TABLE target_events (
    id          BIGSERIAL PRIMARY KEY,
    target_id   TEXT NOT NULL REFERENCES targets(id) ON DELETE CASCADE,
    campaign_id TEXT,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    at          BIGINT NOT NULL,
    attempt_id  TEXT,
    sip_code    INTEGER,
    reason      TEXT
);
CREATE INDEX target_events_target ON target_events(target_id, id);
CREATE INDEX target_events_campaign ON target_events(campaign_id, id);

CREATE TABLE outplans (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE campaigns (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'draft',
    outdial_id  TEXT NOT NULL REFERENCES outdials(id),
    outplan_id  TEXT NOT NULL REFERENCES outplans(id),
    agent_id    TEXT REFERENCES agents(id),
    spec        TEXT NOT NULL,
    -- Why the status is what it is (e.g. the trunk error that paused it).
    status_reason TEXT,
    started_at  BIGINT,
    finished_at BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX campaigns_status ON campaigns(status);

-- One row per call request; a campaign makes one per attempt.
CREATE TABLE calls (
    id                TEXT PRIMARY KEY,
    campaign_id       TEXT REFERENCES campaigns(id) ON DELETE SET NULL,
    target_id         TEXT REFERENCES targets(id) ON DELETE SET NULL,
    destination_index INTEGER,
    attempt           INTEGER NOT NULL DEFAULT 1,
    agent_id          TEXT,
    trunk             TEXT,
    status            TEXT NOT NULL,
    sip_call_id       TEXT,
    from_uri          TEXT,
    to_uri            TEXT,
    outcome           TEXT,
    sip_code          INTEGER,
    q850_cause        INTEGER,
    result            TEXT,
    hangup_by         TEXT,
    reason            TEXT,
    node_id           TEXT,
    -- One-off calls: the request (to, from, max_retries, ...); campaign calls: {}.
    spec              TEXT NOT NULL DEFAULT '{}',
    -- One-off calls keep earlier attempts' summaries here (JSON array).
    attempts          TEXT NOT NULL DEFAULT '[]',
    created_at        BIGINT NOT NULL,
    scheduled_at      BIGINT,
    invite_sent_at    BIGINT,
    ringing_at        BIGINT,
    answered_at       BIGINT,
    ended_at          BIGINT,
    duration_ms       BIGINT
);
CREATE INDEX calls_campaign ON calls(campaign_id, id);
CREATE INDEX calls_target ON calls(target_id, id);
CREATE INDEX calls_open ON calls(node_id) WHERE ended_at IS NULL;
-- One-off calls waiting for their time (campaign attempts never are).
CREATE INDEX calls_scheduled ON calls(scheduled_at) WHERE status IN ('pending', 'scheduled');

-- herald processes sharing this database, for lease recovery.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);

CREATE TABLE dnc (
    number      TEXT PRIMARY KEY,
    reason      TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    event_types     TEXT NOT NULL,
    secret          TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    created_at      BIGINT NOT NULL
);
