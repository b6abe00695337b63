-- The per-attempt tables (calls, target_events) without per-row foreign-key
-- checks: every attempt inserts a call row and two or three events, and each
-- check is a query that also share-locks the target's and the campaign's
-- rows; together they cost as much as the rows. herald only writes these
-- rows for a target or campaign it has just read or updated in the same
-- transaction. What the foreign keys did on delete is kept by the triggers
-- below: deleting a target (directly or with its outdial) deletes its events
-- and detaches its calls; deleting a campaign detaches its calls.
--
-- target_events_campaign is dropped: a campaign's history is read from the
-- event log (event_pages); target_events is read per target.
--
-- Ids are compared byte-wise (COLLATE "C"): they are UUID text, and a
-- locale's collation only makes every index comparison slower.

ALTER TABLE target_events DROP CONSTRAINT IF EXISTS target_events_target_id_fkey;
ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_campaign_id_fkey;
ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_target_id_fkey;
DROP INDEX IF EXISTS target_events_campaign;

ALTER TABLE targets
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN outdial_id TYPE TEXT COLLATE "C",
    ALTER COLUMN dest_key TYPE TEXT COLLATE "C";
ALTER TABLE calls
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN campaign_id TYPE TEXT COLLATE "C",
    ALTER COLUMN target_id TYPE TEXT COLLATE "C",
    ALTER COLUMN node_id TYPE TEXT COLLATE "C";
ALTER TABLE target_events
    ALTER COLUMN target_id TYPE TEXT COLLATE "C",
    ALTER COLUMN campaign_id TYPE TEXT COLLATE "C";

CREATE FUNCTION herald_target_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM target_events WHERE target_id = OLD.id;
    UPDATE calls SET target_id = NULL WHERE target_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER targets_deleted AFTER DELETE ON targets
    FOR EACH ROW EXECUTE FUNCTION herald_target_deleted();

CREATE FUNCTION herald_campaign_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE calls SET campaign_id = NULL WHERE campaign_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER campaigns_deleted AFTER DELETE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION herald_campaign_deleted();
