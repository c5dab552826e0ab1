-- Who has a DM conversation with whom, and when its last message was sent: the DM peers whose
-- presence a user receives, read by user without scanning the messages.
CREATE TABLE dm_peers (
    user_id BIGINT NOT NULL REFERENCES users(id),
    peer_id BIGINT NOT NULL REFERENCES users(id),
    last_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, peer_id)
);
CREATE INDEX dm_peers_recent ON dm_peers(user_id, last_at);
INSERT INTO dm_peers(user_id, peer_id, last_at)
SELECT a, b, MAX(t) FROM (
    SELECT sender_id AS a, recipient_id AS b, created_at AS t FROM messages WHERE recipient_id IS NOT NULL
    UNION ALL
    SELECT recipient_id AS a, sender_id AS b, created_at AS t FROM messages WHERE recipient_id IS NOT NULL
) AS pairs
WHERE a <> b
GROUP BY a, b;
