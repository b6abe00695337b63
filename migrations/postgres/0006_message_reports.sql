-- Delivery reports kept until their message can take them. A report (an
-- SMPP receipt, an e-mail DSN) is acknowledged to its peer only once it is
-- applied or kept here: one that overtook the record of its send waits for
-- that record; one whose send's acknowledgement was lost in a crash settles
-- that send, matched by the recipient's address (src/store/reports.rs).
-- Unmatched reports are dropped after a while.
CREATE TABLE message_reports (
    id          BIGSERIAL PRIMARY KEY,
    channel     TEXT NOT NULL,
    -- herald's message id (a DSN's VERP address), else NULL.
    message_id  TEXT,
    -- The peer's id (an SMPP receipt's message id, normalised).
    provider_id TEXT,
    -- The address the report is about, as matched (SMS: digits only).
    address     TEXT,
    -- delivered | failed | bounced
    status      TEXT NOT NULL,
    code        TEXT,
    text        TEXT,
    -- 1: suppress the recipient when applied (a bounce).
    suppress    INTEGER NOT NULL DEFAULT 0,
    received_at BIGINT NOT NULL
);
CREATE INDEX message_reports_provider ON message_reports(channel, provider_id);
CREATE INDEX message_reports_message ON message_reports(message_id);
CREATE INDEX message_reports_address ON message_reports(channel, address, received_at);
