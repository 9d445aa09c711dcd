DROP TABLE IF EXISTS admin_audit_log;
