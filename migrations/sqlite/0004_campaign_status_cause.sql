-- Why a campaign is in its status, when the scheduler branches on it:
-- 'force_stop' (stopping with live calls hung up) or 'daily_start' (waiting
-- for its schedule's next daily start). status_reason keeps the text shown
-- to people; this column is for code. NULL otherwise.
ALTER TABLE campaigns ADD COLUMN status_cause TEXT;

-- Campaigns caught in one of those statuses by the upgrade keep their cause.
UPDATE campaigns SET status_cause = 'force_stop'
    WHERE status = 'stopping' AND status_reason = 'force';
UPDATE campaigns SET status_cause = 'daily_start'
    WHERE status = 'waiting' AND status_reason LIKE 'waiting for the next daily start%';
