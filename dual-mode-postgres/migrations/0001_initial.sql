-- The job layer's tables, in the schema the application names (`@schema@`).
--
-- `q` is a partition of a queue (the queue's name for its home or only partition, the
-- partition's tag for the others). Entry ids are `<ms>-<seq>`: the time of the push and a
-- number from one sequence, so ids never repeat and order by (ms, seq).

CREATE SEQUENCE @schema@.entry_seq;

-- The queues' partitions: partition count (on the home), pause, parked entries dropped.
CREATE TABLE @schema@.queues (
    q text PRIMARY KEY,
    partitions smallint,
    paused_ms bigint,
    parked_dropped bigint NOT NULL DEFAULT 0
);

-- Ready and delivered entries of the lanes (0 high, 1 normal, 2 low). An entry that no
-- consumer holds is ready; a delivered one has its owner, its delivery time and its delivery
-- count, the run's fencing token.
CREATE TABLE @schema@.entries (
    q text NOT NULL,
    lane smallint NOT NULL,
    ms bigint NOT NULL,
    seq bigint NOT NULL,
    job_id text,
    fields bytea NOT NULL,
    consumer text,
    delivered_ms bigint NOT NULL DEFAULT 0,
    deliveries bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (q, lane, ms, seq)
);
CREATE INDEX entries_ready ON @schema@.entries (q, lane, ms, seq) WHERE consumer IS NULL;
CREATE INDEX entries_held ON @schema@.entries (q, lane, consumer) WHERE consumer IS NOT NULL;

-- A lane's consumers and when each last read or claimed.
CREATE TABLE @schema@.consumers (
    q text NOT NULL,
    lane smallint NOT NULL,
    name text NOT NULL,
    seen_ms bigint NOT NULL,
    PRIMARY KEY (q, lane, name)
);

-- Delayed jobs (delayed pushes and retries) and the fields of each one's next entry.
CREATE TABLE @schema@.delayed (
    q text NOT NULL,
    job_id text NOT NULL,
    due_ms bigint NOT NULL,
    fields bytea NOT NULL,
    PRIMARY KEY (q, job_id)
);
CREATE INDEX delayed_due ON @schema@.delayed (q, due_ms, job_id);

-- Parked entries (the dead letters), capped per partition.
CREATE TABLE @schema@.parked (
    q text NOT NULL,
    ms bigint NOT NULL,
    seq bigint NOT NULL,
    fields bytea NOT NULL,
    PRIMARY KEY (q, ms, seq)
);

-- Job records: a hash of fields (JSON strings; a value that is not UTF-8 is an array of
-- bytes), living until `expires_ms` once the job ended.
CREATE TABLE @schema@.jobs (
    q text NOT NULL,
    id text NOT NULL,
    hash jsonb NOT NULL,
    expires_ms bigint,
    PRIMARY KEY (q, id)
);
CREATE INDEX jobs_expiry ON @schema@.jobs (q, expires_ms) WHERE expires_ms IS NOT NULL;

-- Jobs by the time they entered a state (running, done, parked, cancelled).
CREATE TABLE @schema@.job_sets (
    q text NOT NULL,
    state text NOT NULL,
    job_id text NOT NULL,
    at_ms bigint NOT NULL,
    PRIMARY KEY (q, state, job_id)
);
CREATE INDEX job_sets_order ON @schema@.job_sets (q, state, at_ms, job_id);

-- Unique keys and the job holding each: the primary key is what makes a key unique.
CREATE TABLE @schema@.uniques (
    q text NOT NULL,
    key text NOT NULL,
    job_id text NOT NULL,
    expires_ms bigint NOT NULL,
    PRIMARY KEY (q, key)
);

-- Rate buckets (GCRA theoretical arrival times) and paused rate keys, on the home.
CREATE TABLE @schema@.buckets (
    q text NOT NULL,
    name text NOT NULL,
    tat double precision NOT NULL,
    expires_ms bigint NOT NULL,
    PRIMARY KEY (q, name)
);
CREATE TABLE @schema@.rate_pauses (
    q text NOT NULL,
    key text NOT NULL,
    expires_ms bigint NOT NULL,
    PRIMARY KEY (q, key)
);

-- Key concurrency: one row per key to lock, the slots held (until a lease ends) and the
-- waiters (since when they wait).
CREATE TABLE @schema@.slot_keys (
    q text NOT NULL,
    key text NOT NULL,
    PRIMARY KEY (q, key)
);
CREATE TABLE @schema@.slots (
    q text NOT NULL,
    key text NOT NULL,
    job_id text NOT NULL,
    until_ms bigint NOT NULL,
    PRIMARY KEY (q, key, job_id)
);
CREATE TABLE @schema@.slot_waiters (
    q text NOT NULL,
    key text NOT NULL,
    job_id text NOT NULL,
    since_ms bigint NOT NULL,
    PRIMARY KEY (q, key, job_id)
);

-- Schedules: state, ticks enqueued (one row per schedule and tick: a tick is enqueued
-- once however many schedulers run), and the index of schedules on the home.
CREATE TABLE @schema@.schedules (
    q text NOT NULL,
    name text NOT NULL,
    last_ms bigint,
    paused_ms bigint,
    resumed_ms bigint,
    PRIMARY KEY (q, name)
);
CREATE TABLE @schema@.ticks (
    q text NOT NULL,
    name text NOT NULL,
    tick_ms bigint NOT NULL,
    expires_ms bigint NOT NULL,
    PRIMARY KEY (q, name, tick_ms)
);
CREATE TABLE @schema@.schedule_index (
    q text NOT NULL,
    name text NOT NULL,
    description text NOT NULL,
    PRIMARY KEY (q, name)
);

-- Moves job `p_id`'s record to `p_state` with `p_items` (out of its old state's set, into the
-- new one's, stamped `updated`); an ended job's record lives `p_ttl` ms more. A record that
-- expired is written anew.
CREATE FUNCTION @schema@.transit(p_q text, p_id text, p_state text, p_now bigint, p_items jsonb, p_ttl bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    old_state text;
    old_expires bigint;
    found_row boolean;
BEGIN
    SELECT hash->>'state', expires_ms, true INTO old_state, old_expires, found_row
        FROM @schema@.jobs WHERE q = p_q AND id = p_id FOR UPDATE;
    IF found_row AND old_expires IS NOT NULL AND old_expires <= p_now THEN
        DELETE FROM @schema@.jobs WHERE q = p_q AND id = p_id;
        found_row := false;
        old_state := NULL;
        old_expires := NULL;
    END IF;
    IF old_state IS DISTINCT FROM p_state THEN
        IF old_state IN ('running', 'done', 'parked', 'cancelled') THEN
            DELETE FROM @schema@.job_sets WHERE q = p_q AND state = old_state AND job_id = p_id;
        END IF;
        IF p_state IN ('running', 'done', 'parked', 'cancelled') THEN
            INSERT INTO @schema@.job_sets (q, state, job_id, at_ms) VALUES (p_q, p_state, p_id, p_now)
                ON CONFLICT (q, state, job_id) DO UPDATE SET at_ms = excluded.at_ms;
        END IF;
    END IF;
    INSERT INTO @schema@.jobs AS j (q, id, hash, expires_ms)
        VALUES (p_q, p_id,
                jsonb_build_object('state', p_state, 'updated', p_now::text) || p_items,
                CASE WHEN p_state IN ('done', 'parked', 'cancelled') THEN p_now + p_ttl END)
        ON CONFLICT (q, id) DO UPDATE SET
            hash = j.hash || jsonb_build_object('state', p_state, 'updated', p_now::text) || p_items,
            expires_ms = CASE WHEN p_state IN ('done', 'parked', 'cancelled') THEN p_now + p_ttl ELSE j.expires_ms END;
END
$$;

-- Claims unique key `p_key` for job `p_id` until `p_until`; the id of the job that holds it
-- already, if one does. The key's primary key decides between concurrent claims.
CREATE FUNCTION @schema@.claim_unique(p_q text, p_key text, p_id text, p_now bigint, p_until bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    holder text;
BEGIN
    INSERT INTO @schema@.uniques AS u (q, key, job_id, expires_ms) VALUES (p_q, p_key, p_id, p_until)
        ON CONFLICT (q, key) DO UPDATE SET job_id = excluded.job_id, expires_ms = excluded.expires_ms
        WHERE u.expires_ms <= p_now
        RETURNING job_id INTO holder;
    IF holder IS NOT NULL THEN
        RETURN NULL;
    END IF;
    SELECT job_id INTO holder FROM @schema@.uniques WHERE q = p_q AND key = p_key;
    RETURN holder;
END
$$;

-- Releases unique key `p_key` if it still names job `p_id`.
CREATE FUNCTION @schema@.release_unique(p_q text, p_key text, p_id text)
RETURNS void LANGUAGE sql AS $$
    DELETE FROM @schema@.uniques WHERE q = p_q AND key = p_key AND job_id = p_id;
$$;
