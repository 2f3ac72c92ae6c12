DROP TABLE node_registrations;
