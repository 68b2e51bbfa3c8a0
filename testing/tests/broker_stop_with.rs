//! `hack/kafka.sh`'s `KAFKA_STOP_WITH`: a broker goes with the process it was started for,
//! so a test binary killed before it could stop its brokers leaves none running.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const KAFKA_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/kafka.sh");

fn kafka_sh(args: &[&str], dir: &Path, stop_with: &str) -> Output {
    Command::new("bash")
        .arg(KAFKA_SCRIPT)
        .args(args)
        .arg(dir)
        .env("KAFKA_STOP_WITH", stop_with)
        .output()
        .expect("run hack/kafka.sh")
}

fn broker_pid(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("kafka.pid"))
        .expect("the broker's pid file")
        .trim()
        .to_owned()
}

/// Running and not a zombie, as `hack/lib.sh`'s `alive` has it.
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("State:") && !l.contains("Z (zombie)"))
    })
}

fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(fetch_testing::unique("stop-with"))
}

#[test]
fn a_broker_is_stopped_once_the_process_it_was_started_with_exits() {
    let dir = scratch_dir();
    let mut owner = Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    let started = kafka_sh(&["start"], &dir, &owner.id().to_string());
    assert!(
        started.status.success(),
        "hack/kafka.sh start failed: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let pid = broker_pid(&dir);
    assert!(alive(&pid), "the broker runs while its owner does");

    owner.kill().expect("kill the owner");
    owner.wait().expect("reap the owner");
    // The watcher looks once a second; the stop waits up to 30 s for a clean shutdown.
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(&pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped = !alive(&pid);
    if !stopped {
        let _ = kafka_sh(&["stop"], &dir, "");
    }
    assert!(
        stopped,
        "the broker (pid {pid}) outlived its owner by 60 s; see {}",
        dir.join("stop-with.log").display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stop_with_that_names_no_running_process_is_refused() {
    let dir = scratch_dir();
    for bad in ["soon", "0", "4194305"] {
        let started = kafka_sh(&["start"], &dir, bad);
        let stderr = String::from_utf8_lossy(&started.stderr);
        assert!(!started.status.success(), "KAFKA_STOP_WITH={bad} was taken");
        assert!(
            stderr.contains(&format!(
                "KAFKA_STOP_WITH={bad}: give the id of a running process"
            )),
            "the refusal of {bad} says what to fix: {stderr}"
        );
        assert!(
            !dir.join("kafka.pid").exists(),
            "no broker was started for {bad}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
