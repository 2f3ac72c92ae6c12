-- Every transition of every FSM instance, append-only; an instance is restored from its highest sequence.
CREATE TABLE fsm_transitions (
    machine     text        NOT NULL,
    instance_id text        NOT NULL,
    -- 1 for an instance's first transition; the primary key turns a second writer of the same step into a
    -- unique violation, which the store reports as a transition conflict.
    sequence    integer     NOT NULL CHECK (sequence >= 1),
    transition  text        NOT NULL,
    trigger     text        NOT NULL,
    from_state  text        NOT NULL,
    to_state    text        NOT NULL,
    context     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (machine, instance_id, sequence)
);
