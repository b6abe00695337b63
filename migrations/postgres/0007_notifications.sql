-- Notifications: one send over several channels (POST /v1/notifications/send).
-- Each channel is a delivery, carried by a message (e-mail, SMS) or a
-- one-off call (voice). A delivery not started yet keeps the row it will
-- insert (`pending`), so a fallback chain starts the next channel with what
-- was validated and rendered when the notification was accepted.

CREATE TABLE notifications (
    id                TEXT COLLATE "C" PRIMARY KEY,
    -- queued | sent | delivered | failed
    status            TEXT NOT NULL,
    -- all | fallback
    strategy          TEXT NOT NULL,
    -- fallback: start the next channel when this one is not delivered in time.
    fallback_after_ms BIGINT,
    -- The first recipient field given (e-mail, phone...), for filters.
    recipient         TEXT NOT NULL,
    -- JSON: the accepted request.
    request           TEXT NOT NULL,
    idempotency_key   TEXT UNIQUE,
    request_hash      TEXT NOT NULL,
    bulk_id           TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    final_at          BIGINT
);
CREATE INDEX notifications_status ON notifications(status, id);
CREATE INDEX notifications_recipient ON notifications(recipient);
CREATE INDEX notifications_bulk ON notifications(bulk_id, id) WHERE bulk_id IS NOT NULL;

CREATE TABLE notification_deliveries (
    notification_id TEXT NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    position        BIGINT NOT NULL,
    channel         TEXT NOT NULL,
    -- waiting (a later fallback) | starting | queued | sending | sent |
    -- delivered | bounced | failed | cancelled | skipped
    status          TEXT NOT NULL,
    reason          TEXT,
    -- The message's id (email, sms) or the call's (voice), fixed when the
    -- notification is accepted.
    message_id      TEXT NOT NULL,
    -- JSON: the row to insert when the delivery starts.
    pending         TEXT,
    started_at      BIGINT,
    -- fallback: when the next channel starts if this one is not delivered.
    deadline_at     BIGINT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (notification_id, position)
);
CREATE INDEX notification_deliveries_message ON notification_deliveries(message_id);
CREATE INDEX notification_deliveries_open ON notification_deliveries(status)
    WHERE status IN ('starting', 'queued', 'sending', 'sent');

-- How far the notification follower has read the global event log.
CREATE TABLE notification_cursor (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);
INSERT INTO notification_cursor (name, seq) VALUES ('global', 0);

-- Messages received from contacts (a WhatsApp webhook's messages; later SMS
-- MO and SIP MESSAGE): they open WhatsApp's 24-hour window.
CREATE TABLE inbound_messages (
    id          TEXT COLLATE "C" PRIMARY KEY,
    channel     TEXT NOT NULL,
    -- The provider's id of the message (a wamid): a repeated webhook is kept once.
    provider_id TEXT NOT NULL,
    -- The contact (E.164) and our address.
    from_addr   TEXT NOT NULL,
    to_addr     TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    UNIQUE (channel, provider_id)
);
CREATE INDEX inbound_messages_from ON inbound_messages(channel, from_addr, received_at);

-- Conversations: opened by a person (a worker) sending the first SMS or
-- WhatsApp message; the contact's replies on the same channel, our address
-- and theirs come back to it. One open conversation per such triple.
CREATE TABLE conversations (
    id               TEXT COLLATE "C" PRIMARY KEY,
    channel          TEXT NOT NULL,
    -- Our address (SMS: the sender number; WhatsApp: the phone number id)
    -- and the contact's (E.164), as given, and as matched (digits only).
    our_address      TEXT NOT NULL,
    contact_address  TEXT NOT NULL,
    our_key          TEXT NOT NULL,
    contact_key      TEXT NOT NULL,
    worker           TEXT NOT NULL,
    -- worker | any
    route_replies    TEXT NOT NULL,
    -- open | closed
    status           TEXT NOT NULL,
    closed_reason    TEXT,
    created_at       BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL,
    closed_at        BIGINT
);
CREATE UNIQUE INDEX conversations_open ON conversations(channel, our_key, contact_key) WHERE status = 'open';
CREATE INDEX conversations_idle ON conversations(last_activity_at) WHERE status = 'open';
CREATE INDEX conversations_worker ON conversations(worker, id);

CREATE TABLE conversation_messages (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    -- out (the worker's, a message) | in (the contact's)
    direction       TEXT NOT NULL,
    -- out: the message's id; in: the inbound message's id.
    message_id      TEXT NOT NULL,
    body            TEXT NOT NULL,
    at              BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

-- Bulk sends (POST /v1/notifications/bulk) by idempotency key: the answer
-- given, returned again for the same key and body.
CREATE TABLE notification_bulks (
    id              TEXT COLLATE "C" PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash    TEXT NOT NULL,
    answer          TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

-- A campaign's fallback message for a target that ended failed: the
-- message's id, or '' when none could be made (the event says why).
ALTER TABLE targets ADD COLUMN fallback_message_id TEXT;
CREATE INDEX targets_fallback_due ON targets(outdial_id, id) WHERE state = 'failed' AND fallback_message_id IS NULL;

-- A message's priority: 0 emergency, 1 transactional, 2 marketing. Senders
-- claim due messages in that order, so a marketing bulk never holds up a
-- verification code.
ALTER TABLE messages ADD COLUMN priority BIGINT NOT NULL DEFAULT 1;
CREATE INDEX messages_due_priority ON messages(channel, priority, due_at) WHERE status = 'queued';

-- When a finished message's bodies and variables were purged
-- ([retention] message_body_days); its status, times and events stay.
ALTER TABLE messages ADD COLUMN body_purged_at BIGINT;

-- E-mail engagement (templates that opt in): opens of the pixel and clicks
-- through the redirect.
ALTER TABLE messages ADD COLUMN opens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN clicks BIGINT NOT NULL DEFAULT 0;

-- Provider failover: the provider (a [[channels.*.providers]] name) that
-- carried the message, and each attempt's; NULL with a single transport.
ALTER TABLE messages ADD COLUMN provider TEXT;
ALTER TABLE message_attempts ADD COLUMN provider TEXT;

-- WhatsApp: when the contact read the message (the provider's `read`
-- status; the message itself stays delivered).
ALTER TABLE messages ADD COLUMN read_at BIGINT;
