-- The console's staff accounts: who may sign in, and as which caller of the services they act
-- ("bureau:370300", "bureau:clearing", "institution:H37030000001", "operator:ops"). The role
-- follows from the caller; the console calls the services with that caller's credential, so
-- the services' permission matrix applies to the staff member unchanged.
CREATE TABLE console_staff (
    username TEXT PRIMARY KEY,
    -- Argon2id in PHC string form: the algorithm, its parameters, the salt and the hash.
    password_hash TEXT NOT NULL,
    acts_as TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- What staff did through the console, beside the services' own audit trails (which record the
-- caller and, in `operator_id`, the staff member): every state change the console asked for,
-- by whom, under which message id, and how it ended. Only ever inserted.
CREATE TABLE console_actions (
    action_id TEXT PRIMARY KEY,
    recorded_at_ms BIGINT NOT NULL,
    username TEXT NOT NULL,
    acts_as TEXT NOT NULL,
    rpc TEXT NOT NULL,
    message_id TEXT NOT NULL,
    outcome TEXT NOT NULL
);
