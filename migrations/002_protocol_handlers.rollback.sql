DROP TABLE protocol_handlers;
