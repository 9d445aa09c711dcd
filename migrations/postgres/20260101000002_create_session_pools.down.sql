DROP TABLE IF EXISTS session_pools;
