-- oxitraffic schema, version 3: restarts that lose no visitor, and several instances on one
-- database (SPEC §11).

-- The visitor slots of an instance, saved at a graceful shutdown and read back (then deleted)
-- when it starts again, so that tokens issued before the restart still count. Ages are kept
-- relative to saved_at: monotonic clocks do not survive a process, the wall clock does.
CREATE TABLE slot_snapshots (
    instance smallint PRIMARY KEY CHECK (instance BETWEEN 0 AND 31),
    saved_at timestamptz NOT NULL,
    -- The secret keys of the slot order and of the tags, and where the order had got to:
    -- new tokens stay as unpredictable as before the restart.
    keys bigint[] NOT NULL,
    next_ticket bigint NOT NULL
);

CREATE TABLE saved_slots (
    instance smallint NOT NULL REFERENCES slot_snapshots (instance) ON DELETE CASCADE,
    slot integer NOT NULL,
    tag bigint NOT NULL,
    path_id integer NOT NULL REFERENCES paths (id) ON DELETE CASCADE,
    -- Milliseconds since registration at saved_at.
    age_ms bigint NOT NULL CHECK (age_ms >= 0),
    -- Pending visits: when the visit was registered (it is written with this time).
    registered_at timestamptz,
    -- Counted visits: the visit a later page-left updates, and whether one arrived already.
    visit_id bigint,
    page_left boolean NOT NULL DEFAULT false,
    PRIMARY KEY (instance, slot),
    CHECK ((registered_at IS NULL) <> (visit_id IS NULL))
);

-- What each instance has open right now, published every few seconds so that every
-- instance's /api/live shows the whole site. Rows of an instance that stopped publishing are
-- ignored after a short while and replaced when it publishes again.
CREATE TABLE live_instances (
    instance smallint PRIMARY KEY CHECK (instance BETWEEN 0 AND 31),
    visitors integer NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE live_paths (
    instance smallint NOT NULL REFERENCES live_instances (instance) ON DELETE CASCADE,
    path_id integer NOT NULL REFERENCES paths (id) ON DELETE CASCADE,
    visitors integer NOT NULL,
    PRIMARY KEY (instance, path_id)
);
