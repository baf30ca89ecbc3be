-- The hand-made workflow store of the PostgreSQL baseline (bench/workflow.sh): a workflow table,
-- a history table and a visibility index, like Herald's record / history / visibility keys.
-- Variable k = number of "demo.inbox"-like workflows to create (psql -v k=K).
CREATE TABLE workflows (
  id             text PRIMARY KEY,
  type           text NOT NULL,
  state          text NOT NULL,
  data           text NOT NULL,
  history_length bigint NOT NULL,
  updated_at     timestamptz NOT NULL
);
CREATE INDEX workflows_visibility ON workflows (type, state, updated_at);
CREATE TABLE history (
  workflow_id text NOT NULL,
  seq         bigint NOT NULL,
  kind        text NOT NULL,
  payload     text NOT NULL,
  time        timestamptz NOT NULL,
  PRIMARY KEY (workflow_id, seq)
);
-- Each workflow starts like a Herald start: state "even", count 0, history event 1 "started".
INSERT INTO workflows
SELECT 'inbox-' || n, 'demo.inbox', 'even', '0', 1, clock_timestamp()
  FROM generate_series(0, :k - 1) AS n;
INSERT INTO history SELECT id, 1, 'started', '', updated_at FROM workflows;
VACUUM ANALYZE;
