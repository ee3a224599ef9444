DROP TABLE IF EXISTS notice_acceptances;
