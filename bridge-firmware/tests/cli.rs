//! The `mqtt-bridge` binary's answers to bad arguments: a clear message and exit code 2.

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqtt-bridge"));
    cmd.args(args)
        .env_remove("MQTT_BRIDGE_BROKER")
        .env_remove("MQTT_BRIDGE_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run mqtt-bridge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_are_refused_with_a_clear_message() {
    let (code, err) = run(&[], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--wires PATH is required"), "{err}");
    let (code, err) = run(&["--wires", "/tmp/x.sock", "--broker", "mqtts://h:8883"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no TLS"), "{err}");
    let (code, err) = run(&["--wires", "/tmp/x.sock", "--broker", "mqtt://h:99999"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("bad port"), "{err}");
    let (code, err) = run(&["--wires", "/tmp/x.sock"], &[("MQTT_BRIDGE_BROKER", "mqtt://")]);
    assert_eq!(code, 2);
    assert!(err.contains("MQTT_BRIDGE_BROKER: no host"), "{err}");
    let (code, err) = run(&["--frobnicate"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown argument `--frobnicate`"), "{err}");
    let (code, err) = run(&["--wires", "/tmp/x.sock", "--log-level", "loud"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("bad log level"), "{err}");
}
