-- The services' privileges, as a group role their login role is a member of (`vigil migrate`
-- with `postgres.app_user` makes one): what they read and write, and on the audit trail only
-- SELECT and INSERT. The tables' owner (the role that migrates) keeps everything else, so that
-- a service's credentials can neither rewrite the trail nor disable its trigger.
DO $$
BEGIN
    CREATE ROLE vigil_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- made by another database's migration (roles belong to the whole server)
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO vigil_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM vigil_app;
REVOKE ALL ON _sqlx_migrations FROM vigil_app;
GRANT SELECT ON _sqlx_migrations TO vigil_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO vigil_app;
-- Tables and sequences later migrations create.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO vigil_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO vigil_app;
