-- A step whose action never got a definite answer parks its saga IN_DOUBT instead of being
-- compensated blind; the step remembers that an attempt was in doubt, so that a later attempt
-- which only meets a refused connection does not make it look cleanly failed. Rows written
-- before read as not in doubt.

ALTER TABLE sagas DROP CONSTRAINT sagas_status_check;
ALTER TABLE sagas ADD CONSTRAINT sagas_status_check
    CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'COMPENSATING', 'COMPENSATED',
                      'COMPENSATION_FAILED', 'IN_DOUBT'));

ALTER TABLE saga_steps DROP CONSTRAINT saga_steps_status_check;
ALTER TABLE saga_steps ADD CONSTRAINT saga_steps_status_check
    CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'COMPENSATED', 'COMPENSATION_FAILED',
                      'IN_DOUBT'));

ALTER TABLE saga_steps ADD COLUMN in_doubt boolean NOT NULL DEFAULT false;
