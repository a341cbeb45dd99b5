-- Rooms, meetings (each run of a room) with their participants' sessions, and host sessions.
-- No media and no chat is ever stored: chat lives in the room's memory for the meeting only.
-- Times are unix milliseconds chosen by the caller. AUTOINCREMENT: ids of deleted rows are never
-- handed out again, so an id an admin holds can never point at a different meeting.

CREATE TABLE rooms (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT    NOT NULL CONSTRAINT rooms_name_key UNIQUE,
    meeting_code       TEXT    NOT NULL CONSTRAINT rooms_meeting_code_key UNIQUE,
    max_participants   INTEGER NOT NULL CHECK (max_participants >= 1),
    empty_timeout_secs INTEGER NOT NULL CHECK (empty_timeout_secs >= 0),
    metadata           TEXT    NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL
);

CREATE TABLE meetings (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id            INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    started_at_ms      INTEGER NOT NULL,
    ended_at_ms        INTEGER,
    peak_participants  INTEGER,
    total_participants INTEGER
);
-- At most one running meeting per room.
CREATE UNIQUE INDEX meetings_running_per_room ON meetings (room_id) WHERE ended_at_ms IS NULL;
CREATE INDEX meetings_of_room ON meetings (room_id, started_at_ms);

CREATE TABLE meeting_participants (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_id    INTEGER NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    identity      TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    joined_at_ms  INTEGER NOT NULL,
    left_at_ms    INTEGER
);
-- An identity is in a meeting at most once at a time (a rejoin is a new row after a leave).
CREATE UNIQUE INDEX meeting_participants_open_identity
    ON meeting_participants (meeting_id, identity) WHERE left_at_ms IS NULL;
CREATE INDEX meeting_participants_of_meeting ON meeting_participants (meeting_id, joined_at_ms);

-- Only the SHA-256 of a session token is stored: a copy of the database lets nobody sign in.
CREATE TABLE host_sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_sha256  BLOB    NOT NULL CONSTRAINT host_sessions_token_key UNIQUE
                          CHECK (length(token_sha256) = 32),
    subject       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE INDEX host_sessions_of_subject ON host_sessions (subject);
CREATE INDEX host_sessions_expiry ON host_sessions (expires_at_ms);
