-- The agent's user in Aodh's PostgreSQL database: no DDL, no other table.
-- Run as a superuser, or as the owner of Aodh's tables, connected to
-- Aodh's database (psql -d aodh), after aodh-dbsync and doctor-ext-dbsync.
CREATE ROLE doctor_agent LOGIN PASSWORD 'AGENT_DBPASS';
GRANT CONNECT ON DATABASE aodh TO doctor_agent;
GRANT USAGE ON SCHEMA public TO doctor_agent;
-- Aodh's alarms: load them, move a fired alarm to "alarm" (the claim's
-- SELECT ... FOR UPDATE needs UPDATE on a column, as PostgreSQL says).
GRANT SELECT, UPDATE (state, state_reason, state_timestamp, timestamp)
    ON alarm TO doctor_agent;
-- Aodh's history: one "state transition" row per firing.
GRANT SELECT, INSERT ON alarm_history TO doctor_agent;
-- doctor-ext's shared state: instance map, fault journal, outbox, reports.
GRANT SELECT, INSERT, UPDATE ON doctor_instance, doctor_meta, doctor_host,
    doctor_fault, doctor_fault_instance, doctor_fence TO doctor_agent;
GRANT SELECT, INSERT, UPDATE, DELETE ON doctor_outbox, doctor_report
    TO doctor_agent;
