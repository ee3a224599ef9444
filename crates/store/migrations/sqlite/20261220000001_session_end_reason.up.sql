-- Why a session ended, where that is known: the call's own end (the student or the platform
-- ended it, the browser went away, the student stayed silent, a service failed), the server
-- shutting down, or the server closing on start what a crash left open. Sessions that ended
-- before this migration keep NULL (not recorded). Mirrors migrations/postgres (same column,
-- values and constraint name).
ALTER TABLE sessions ADD COLUMN end_reason TEXT
    CONSTRAINT sessions_end_reason_check CHECK (end_reason IN
        ('ended', 'transport_closed', 'idle_timeout', 'failed', 'server_shutdown', 'server_restart'));
