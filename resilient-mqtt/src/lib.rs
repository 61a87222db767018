//! A resilient MQTT 3.1.1 client: sans-IO session, reconnect, QoS 1 retransmission. Not written yet (issue 3).
#![no_std]
