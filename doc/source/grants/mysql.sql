-- The agent's user in Aodh's MySQL/MariaDB database: no DDL, no other
-- table. Run as root (or a user holding these privileges WITH GRANT
-- OPTION), after aodh-dbsync and doctor-ext-dbsync; 'aodh' is the name of
-- Aodh's database, '%' the hosts the agents connect from.
CREATE USER 'doctor_agent'@'%' IDENTIFIED BY 'AGENT_DBPASS';
-- Aodh's alarms: load them, move a fired alarm to "alarm".
GRANT SELECT, UPDATE (state, state_reason, state_timestamp, `timestamp`)
    ON aodh.alarm TO 'doctor_agent'@'%';
-- Aodh's history: one "state transition" row per firing.
GRANT SELECT, INSERT ON aodh.alarm_history TO 'doctor_agent'@'%';
-- doctor-ext's shared state: instance map, fault journal, outbox, reports
-- (INSERT ... ON DUPLICATE KEY UPDATE needs UPDATE).
GRANT SELECT, INSERT, UPDATE ON aodh.doctor_instance TO 'doctor_agent'@'%';
GRANT SELECT, INSERT, UPDATE ON aodh.doctor_meta TO 'doctor_agent'@'%';
GRANT SELECT, INSERT, UPDATE ON aodh.doctor_host TO 'doctor_agent'@'%';
GRANT SELECT, INSERT, UPDATE ON aodh.doctor_fault TO 'doctor_agent'@'%';
GRANT SELECT, INSERT, UPDATE ON aodh.doctor_fault_instance
    TO 'doctor_agent'@'%';
GRANT SELECT, INSERT, UPDATE ON aodh.doctor_fence TO 'doctor_agent'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON aodh.doctor_outbox
    TO 'doctor_agent'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON aodh.doctor_report
    TO 'doctor_agent'@'%';
