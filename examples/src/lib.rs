//! Host demos of the MQTT link; see the `src/bin` programs.
