DROP TABLE IF EXISTS socket_slots;
DROP TABLE IF EXISTS rate_buckets;
