//! The README's main command, run as a process: the embedded broker, the host bridge and the simulated target.

use std::process::Command;

#[test]
fn demo_echoes_every_message_and_ends_with_the_summary_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--count", "60", "--qos", "1", "--payload-size", "300"])
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("published 60, received 60, lost 0, duplicates "),
        "{stdout}"
    );
}

#[test]
fn demo_refuses_bad_arguments_with_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--qos", "2"])
        .output()
        .expect("run the demo");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("QoS 2 is not supported"));
}
