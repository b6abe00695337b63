-- The per-attempt tables (calls, target_events) without per-row foreign-key
-- checks: every attempt inserts a call row and two or three events, and the
-- checks (a lookup of the target and the campaign for each row, plus on
-- PostgreSQL a share lock on those rows) cost as much as the rows. herald only
-- writes these rows for a target or campaign it has just read or updated in
-- the same transaction. What the foreign keys did on delete is kept by the
-- triggers below: deleting a target (directly or with its outdial) deletes
-- its events and detaches its calls; deleting a campaign detaches its calls.
--
-- target_events_campaign is dropped: a campaign's history is read from the
-- event log (event_pages); target_events is read per target.

CREATE TABLE target_events_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    target_id   TEXT NOT NULL,
    campaign_id TEXT,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    at          BIGINT NOT NULL,
    attempt_id  TEXT,
    sip_code    INTEGER,
    reason      TEXT
);
INSERT INTO target_events_new (id, target_id, campaign_id, from_state, to_state, at, attempt_id, sip_code, reason)
    SELECT id, target_id, campaign_id, from_state, to_state, at, attempt_id, sip_code, reason FROM target_events;
DROP TABLE target_events;
ALTER TABLE target_events_new RENAME TO target_events;
CREATE INDEX target_events_target ON target_events(target_id, id);

CREATE TABLE calls_new (
    id                TEXT PRIMARY KEY,
    campaign_id       TEXT,
    target_id         TEXT,
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
INSERT INTO calls_new (id, campaign_id, target_id, destination_index, attempt, agent_id, trunk, status,
        sip_call_id, from_uri, to_uri, outcome, sip_code, q850_cause, result, hangup_by, reason, node_id,
        spec, attempts, created_at, scheduled_at, invite_sent_at, ringing_at, answered_at, ended_at, duration_ms)
    SELECT id, campaign_id, target_id, destination_index, attempt, agent_id, trunk, status,
        sip_call_id, from_uri, to_uri, outcome, sip_code, q850_cause, result, hangup_by, reason, node_id,
        spec, attempts, created_at, scheduled_at, invite_sent_at, ringing_at, answered_at, ended_at, duration_ms
    FROM calls;
DROP TABLE calls;
ALTER TABLE calls_new RENAME TO calls;
CREATE INDEX calls_campaign ON calls(campaign_id, id);
CREATE INDEX calls_target ON calls(target_id, id);
CREATE INDEX calls_open ON calls(node_id) WHERE ended_at IS NULL;
-- One-off calls waiting for their time (campaign attempts never are).
CREATE INDEX calls_scheduled ON calls(scheduled_at) WHERE status IN ('pending', 'scheduled');

CREATE TRIGGER targets_deleted AFTER DELETE ON targets BEGIN
    DELETE FROM target_events WHERE target_id = OLD.id;
    UPDATE calls SET target_id = NULL WHERE target_id = OLD.id;
END;
CREATE TRIGGER campaigns_deleted AFTER DELETE ON campaigns BEGIN
    UPDATE calls SET campaign_id = NULL WHERE campaign_id = OLD.id;
END;
