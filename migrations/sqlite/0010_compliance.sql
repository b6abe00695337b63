-- Compliance: the consent on record for a target (`none`, `express`,
-- `express_written`, and when it was given), the gate's last refusal of a
-- target (why, when, and until when when it is only "not now"), and the
-- calls to a number across every campaign and one-off call (frequency caps
-- and quiet periods read them by number and time).
ALTER TABLE targets ADD COLUMN consent TEXT;
ALTER TABLE targets ADD COLUMN consent_at BIGINT;
ALTER TABLE targets ADD COLUMN refusal TEXT;
ALTER TABLE targets ADD COLUMN refusal_at BIGINT;
ALTER TABLE targets ADD COLUMN refusal_until BIGINT;
CREATE INDEX calls_number ON calls(to_uri, created_at);
-- Answering-machine detection: who answered (human, machine_start,
-- machine_end_beep, machine_end_silence, machine_end_other, fax, unknown) and
-- when, in ms after the answer.
ALTER TABLE calls ADD COLUMN answered_by TEXT;
ALTER TABLE calls ADD COLUMN amd_ms BIGINT;
