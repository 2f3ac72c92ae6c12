DROP TABLE bridge_states;
