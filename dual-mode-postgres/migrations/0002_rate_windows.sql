-- Rate limits' windows of actual starts: every start, reserved or not, also needs room among
-- the starts of its bucket's last period (at most the limit's count plus its burst). One row
-- per start, kept until it leaves the window (and a second more).
CREATE TABLE @schema@.rate_starts (
    q text NOT NULL,
    bucket text NOT NULL,
    at_ms bigint NOT NULL,
    job_id text NOT NULL,
    expires_ms bigint NOT NULL,
    PRIMARY KEY (q, bucket, at_ms, job_id)
);
CREATE INDEX rate_starts_expiry ON @schema@.rate_starts (q, expires_ms);
