-- Why a campaign is in its status, when the scheduler branches on it:
-- 'force_stop' (stopping with live calls hung up) or 'daily_start' (waiting
-- for its schedule's next daily start). status_reason keeps the text shown
-- to people; this column is for code. NULL otherwise.
ALTER TABLE campaigns ADD COLUMN status_cause TEXT;
