-- Rooms, meetings (each run of a room) with their participants' sessions, and host sessions.
-- No media and no chat is ever stored: chat lives in the room's memory for the meeting only.
-- Times are unix milliseconds chosen by the caller. Every integer is BIGINT so the storage layer
-- reads one integer type on both backends. Identity columns never reuse ids of deleted rows.

CREATE TABLE rooms (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               TEXT   NOT NULL CONSTRAINT rooms_name_key UNIQUE,
    meeting_code       TEXT   NOT NULL CONSTRAINT rooms_meeting_code_key UNIQUE,
    max_participants   BIGINT NOT NULL CHECK (max_participants >= 1),
    empty_timeout_secs BIGINT NOT NULL CHECK (empty_timeout_secs >= 0),
    metadata           TEXT   NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    updated_at_ms      BIGINT NOT NULL
);

CREATE TABLE meetings (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id            BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    started_at_ms      BIGINT NOT NULL,
    ended_at_ms        BIGINT,
    peak_participants  BIGINT,
    total_participants BIGINT
);
-- At most one running meeting per room.
CREATE UNIQUE INDEX meetings_running_per_room ON meetings (room_id) WHERE ended_at_ms IS NULL;
CREATE INDEX meetings_of_room ON meetings (room_id, started_at_ms);

CREATE TABLE meeting_participants (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meeting_id    BIGINT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    identity      TEXT   NOT NULL,
    display_name  TEXT   NOT NULL,
    joined_at_ms  BIGINT NOT NULL,
    left_at_ms    BIGINT
);
-- An identity is in a meeting at most once at a time (a rejoin is a new row after a leave).
CREATE UNIQUE INDEX meeting_participants_open_identity
    ON meeting_participants (meeting_id, identity) WHERE left_at_ms IS NULL;
CREATE INDEX meeting_participants_of_meeting ON meeting_participants (meeting_id, joined_at_ms);

-- Only the SHA-256 of a session token is stored: a copy of the database lets nobody sign in.
CREATE TABLE host_sessions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_sha256  BYTEA  NOT NULL CONSTRAINT host_sessions_token_key UNIQUE
                         CHECK (octet_length(token_sha256) = 32),
    subject       TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX host_sessions_of_subject ON host_sessions (subject);
CREATE INDEX host_sessions_expiry ON host_sessions (expires_at_ms);
