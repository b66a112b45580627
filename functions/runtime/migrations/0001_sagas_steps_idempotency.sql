-- Saga state, one row per saga plus one row per step, and the idempotency records of the API and
-- the workers. Primary keys and unique constraints make a retried write land on the same row.

CREATE TABLE sagas (
    transaction_id text PRIMARY KEY,
    status         text NOT NULL CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED',
                                                   'COMPENSATING', 'COMPENSATED', 'COMPENSATION_FAILED')),
    version        bigint NOT NULL CHECK (version >= 1),
    request        jsonb NOT NULL,
    error          text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- Listing by status and finding stuck sagas scan this index, never the table.
CREATE INDEX sagas_status_updated_at ON sagas (status, updated_at);

CREATE TABLE saga_steps (
    transaction_id text NOT NULL REFERENCES sagas (transaction_id) ON DELETE CASCADE,
    step_index     integer NOT NULL CHECK (step_index >= 0),
    step_name      text NOT NULL,
    status         text NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED',
                                                   'COMPENSATED', 'COMPENSATION_FAILED')),
    attempts       integer NOT NULL CHECK (attempts >= 0),
    error          text,
    updated_at     timestamptz,
    PRIMARY KEY (transaction_id, step_name),
    UNIQUE (transaction_id, step_index)
);

CREATE TABLE idempotency_records (
    id                 text PRIMARY KEY,
    status             text NOT NULL CHECK (status IN ('INPROGRESS', 'COMPLETED')),
    payload_hash       text NOT NULL,
    -- Epoch seconds after which the record is forgotten (the DynamoDB TTL unit).
    expiration         bigint NOT NULL,
    -- Epoch milliseconds after which an INPROGRESS claim may be taken over.
    in_progress_expiry bigint,
    response           jsonb
);

CREATE INDEX idempotency_records_expiration ON idempotency_records (expiration);
