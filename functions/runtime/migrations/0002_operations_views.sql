-- Views for operators: how many sagas are in each status, which ones are stuck, and which steps
-- fail. Read-only; the runtime never queries them.

CREATE VIEW sagas_by_status AS
SELECT status,
       count(*)        AS sagas,
       min(updated_at) AS oldest_updated_at,
       max(updated_at) AS newest_updated_at
FROM sagas
GROUP BY status;

-- Active sagas not updated for a while: 15 minutes, or the session setting
-- `sagaform.stuck_after` (e.g. `SET sagaform.stuck_after = '5 minutes'`).
CREATE VIEW stuck_sagas AS
SELECT transaction_id,
       status,
       version,
       error,
       created_at,
       updated_at,
       now() - updated_at AS idle_for
FROM sagas
WHERE status IN ('PENDING', 'RUNNING', 'COMPENSATING')
  AND updated_at < now() - coalesce(nullif(current_setting('sagaform.stuck_after', true), '')::interval,
                                    interval '15 minutes');

-- Failures per step: an action failure keeps its error after the step is compensated, so
-- `action_failures` counts every saga whose step failed, compensated or not.
CREATE VIEW step_failures AS
SELECT step_name,
       count(*) FILTER (WHERE status <> 'COMPENSATION_FAILED') AS action_failures,
       count(*) FILTER (WHERE status = 'COMPENSATION_FAILED')  AS compensation_failures,
       max(updated_at)                                          AS last_failure_at
FROM saga_steps
WHERE error IS NOT NULL
GROUP BY step_name;
