//! `hack/kafka.sh`'s `KAFKA_STOP_WITH`: a broker goes with the process it was started for,
//! so a test binary killed before it could stop its brokers leaves none running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use fetch_testing::{kafka_sh, wait_until_else};

/// `hack/kafka.sh COMMAND DIR` whose broker goes with process `stop_with`.
fn run(command: &str, dir: &Path, stop_with: &str) -> Output {
    kafka_sh(command, dir)
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

/// An owner process that exits when its stdin closes: when [`Owner::exit`] drops it, or with
/// this test binary if the binary is killed, so the broker never outlives the test for long.
struct Owner(Child);

impl Owner {
    fn spawn() -> Self {
        let child = Command::new("sh")
            .args(["-c", "read _"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn the owner");
        Owner(child)
    }

    fn exit(&mut self) {
        drop(self.0.stdin.take());
        self.0.wait().expect("reap the owner");
    }
}

/// A broker directory, its broker stopped and the directory removed on every way out.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.0.join("kafka.pid").exists() {
            let _ = kafka_sh("stop", &self.0).output();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_broker_is_stopped_once_the_process_it_was_started_with_exits() {
    let dir = Scratch(scratch_dir());
    let mut owner = Owner::spawn();
    let started = run("start", &dir.0, &owner.0.id().to_string());
    assert!(
        started.status.success(),
        "hack/kafka.sh start failed: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let pid = broker_pid(&dir.0);
    assert!(alive(&pid), "the broker runs while its owner does");

    owner.exit();
    // The watcher looks once a second; the stop waits up to 30 s for a clean shutdown.
    wait_until_else(
        &format!("the broker (pid {pid}) to stop once its owner exited"),
        || !alive(&pid),
        || format!("see {}", dir.0.join("stop-with.log").display()),
    );
}

#[test]
fn a_stop_with_that_names_no_running_process_is_refused() {
    let dir = Scratch(scratch_dir());
    for bad in ["soon", "0", "4194305"] {
        let started = run("start", &dir.0, bad);
        let stderr = String::from_utf8_lossy(&started.stderr);
        assert!(!started.status.success(), "KAFKA_STOP_WITH={bad} was taken");
        assert!(
            stderr.contains(&format!(
                "KAFKA_STOP_WITH={bad}: give the id of a running process"
            )),
            "the refusal of {bad} says what to fix: {stderr}"
        );
        assert!(
            !dir.0.exists(),
            "refused before anything was made for {bad}"
        );
    }
}
