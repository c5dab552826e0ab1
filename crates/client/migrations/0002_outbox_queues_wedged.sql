-- Outbox: per-conversation queues, wedged items with a typed reason, unanswered attempts.
--
-- `queue` is the ordering key (see outbox::queue_of): items of one queue are sent in seq
-- order, queues do not wait for each other. `unanswered` counts sends that got no reply within
-- the request timeout; after a bound the item is wedged with reason `no_answer`. `wedge` is the
-- JSON of outbox::WedgeReason. The old state 'failed' (permanent server error) becomes
-- 'wedged' with reason `refused`.
ALTER TABLE outbox ADD COLUMN queue TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN unanswered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN wedge TEXT;

UPDATE outbox SET queue = CASE event
    WHEN 'chat:send' THEN 'public'
    WHEN 'dm:send' THEN 'dm:' || json_extract(request, '$.payload.to')
    WHEN 'read:mark' THEN 'read:' || json_extract(request, '$.payload.conversation')
    WHEN 'user:follow' THEN 'follows'
    WHEN 'user:unfollow' THEN 'follows'
    ELSE 'feed'
END;

UPDATE outbox SET state = 'wedged',
    wedge = json_object('code', 'refused', 'error',
        json_object('code', COALESCE(error_code, 'internal'), 'message', COALESCE(error_message, '')))
WHERE state = 'failed';

-- The heads of the pending queues are found by a skip scan over this index.
CREATE INDEX outbox_queue ON outbox (state, queue, seq);
CREATE INDEX outbox_sent ON outbox (state, updated_at);
