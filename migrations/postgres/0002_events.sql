-- The event log: every state change of a campaign, in order, for the SSE
-- stream (GET /v1/campaigns/{id}/events) and webhooks.
--
-- Each campaign numbers its events 1, 2, 3, ... without gaps. A transaction
-- that records events bumps campaigns.event_seq by their count (which locks
-- the campaign row until it commits) and stores them as one page: a JSON
-- array whose i-th element has sequence number first_seq + i. Allocation and
-- commit are therefore in sequence order, and a reader that sees page N has
-- seen every page before it. campaigns.event_seq is the last committed number.
ALTER TABLE campaigns ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE event_pages (
    campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    first_seq   BIGINT NOT NULL,
    last_seq    BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    -- JSON array of events, each [code, at, field...] (src/store/events.rs, LAYOUTS).
    events      TEXT NOT NULL,
    PRIMARY KEY (campaign_id, last_seq)
);
-- Pages are written once and read by offset: no compression (CPU is what the writers are short of).
ALTER TABLE event_pages ALTER COLUMN events SET STORAGE EXTERNAL;

-- Webhook delivery state. The secret (0001) is kept to sign deliveries and is
-- never returned by the API.
ALTER TABLE webhooks ADD COLUMN last_error TEXT;
ALTER TABLE webhooks ADD COLUMN last_error_at BIGINT;
ALTER TABLE webhooks ADD COLUMN last_success_at BIGINT;
-- Start of the current run of failures (NULL while deliveries succeed).
ALTER TABLE webhooks ADD COLUMN failing_since BIGINT;
-- Consecutive failed deliveries (the backoff exponent).
ALTER TABLE webhooks ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN disabled_at BIGINT;
ALTER TABLE webhooks ADD COLUMN delivered_count BIGINT NOT NULL DEFAULT 0;
-- PostgreSQL: the node delivering this webhook, until lease_expires_at.
ALTER TABLE webhooks ADD COLUMN lease_owner TEXT;
ALTER TABLE webhooks ADD COLUMN lease_expires_at BIGINT;

-- The durable outbox: the event log plus, per webhook and campaign, the last
-- sequence number delivered (or skipped by the webhook's type filter).
CREATE TABLE webhook_cursors (
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, campaign_id)
);
CREATE INDEX webhook_cursors_campaign ON webhook_cursors(campaign_id);
