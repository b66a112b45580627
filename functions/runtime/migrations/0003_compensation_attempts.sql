-- Compensations count their attempts apart from the action's, so a compensation retried by
-- redelivery (the sqs pattern) stops after its own retries. Rows written before read as zero.

ALTER TABLE saga_steps ADD COLUMN compensation_attempts integer NOT NULL DEFAULT 0;
