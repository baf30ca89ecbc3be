-- pgbench script: one durable workflow transition done by hand in PostgreSQL — one transaction
-- that locks the workflow row, updates its state (flipping even/odd), data (the signal count),
-- history length and updated_at (which moves its entry in the visibility index on
-- (type, state, updated_at)), and appends one history row. The same transition as a signal to a
-- Herald "demo.inbox" workflow. Variable k = number of workflows (pgbench -D k=K).
\set n random(0, :k - 1)
BEGIN;
SELECT state, data, history_length FROM workflows WHERE id = 'inbox-' || :n FOR UPDATE;
UPDATE workflows
   SET state = CASE WHEN state = 'even' THEN 'odd' ELSE 'even' END,
       data = (data::bigint + 1)::text,
       history_length = history_length + 1,
       updated_at = clock_timestamp()
 WHERE id = 'inbox-' || :n
RETURNING history_length AS seq \gset
INSERT INTO history (workflow_id, seq, kind, payload, time)
VALUES ('inbox-' || :n, :seq, 'signaled', 'ping', clock_timestamp());
END;
