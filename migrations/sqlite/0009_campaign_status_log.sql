-- Every change of a campaign's status, with who made it: `scheduler`, or
-- `api:<key name>` / `console:<key name>` for a person's request. The event
-- log has the same changes (campaign.status) among every target's; this
-- table is what the console's status log reads, cheaply, per campaign.
CREATE TABLE campaign_status_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    reason      TEXT,
    changed_by  TEXT NOT NULL
);
CREATE INDEX campaign_status_log_campaign ON campaign_status_log(campaign_id, id);

-- The changes made before this table, from the event log; who made them was
-- not kept.
INSERT INTO campaign_status_log (campaign_id, at, from_status, to_status, reason, changed_by)
SELECT p.campaign_id,
       json_extract(e.value, '$[1]'),
       json_extract(e.value, '$[2]'),
       json_extract(e.value, '$[3]'),
       json_extract(e.value, '$[4]'),
       'unknown'
FROM event_pages p, json_each(p.events) e
WHERE json_extract(e.value, '$[0]') = 'C'
ORDER BY p.campaign_id, p.first_seq + e.key;
