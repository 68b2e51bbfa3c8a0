//! End-to-end: the project's image, as `docker build` makes it from the repository's
//! `Dockerfile` (`hack/images.sh project`, which prints its name; hack/e2e.sh exports it as
//! `FETCH_E2E_IMAGE`). The containers run on the Docker engine of this machine.

use std::path::{Path, PathBuf};

use fetch_deploy_tests::{docker, e2e_image, run, shared_data};

/// The take-home's sample: 2,008 lines, of which these are cleaned and dead-lettered by the
/// processing rules (README, "Processing rules").
const SAMPLE: &str = "user-login-sample.jsonl";
const SAMPLE_CLEANED: u64 = 2_000;
const SAMPLE_DEAD_LETTERED: u64 = 8;

/// Largest acceptable image: a slim Debian (~75 MB), OpenSSL, libcurl and the two binaries.
const MAX_IMAGE_BYTES: u64 = 250_000_000;

/// A directory of the test's own that the container's user (65532) may write to; removed when
/// dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("fetch-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .expect("make the scratch directory writable for the container's user");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The numbers of the report's `events` line: (read, cleaned, dead-lettered).
fn report_counts(report: &str) -> (u64, u64, u64) {
    let line = report
        .lines()
        .find(|l| l.starts_with("events "))
        .unwrap_or_else(|| panic!("no `events` line in the report:\n{report}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.replace(',', "").parse().ok())
        .collect();
    match numbers[..] {
        [read, cleaned, dead_lettered, ..] => (read, cleaned, dead_lettered),
        _ => panic!("the `events` line does not hold three counts: {line}"),
    }
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{} line {}: not JSON ({e}): {line}", path.display(), i + 1)
            })
        })
        .collect()
}

#[test]
fn image_runs_as_uid_65532() {
    let image = e2e_image();
    let user = docker(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
    assert_eq!(user.trim(), "65532:65532", "the image's USER");
    let id = docker(&["run", "--rm", "--entrypoint", "id", &image]);
    assert!(
        id.contains("uid=65532") && id.contains("gid=65532"),
        "a container of the image runs as 65532:65532, not: {id}"
    );
}

#[test]
fn both_binaries_start() {
    let image = e2e_image();
    let version = docker(&["run", "--rm", &image, "--version"]);
    assert!(
        version.starts_with("fetch-consumer "),
        "fetch-consumer is the entrypoint: {version}"
    );
    let help = docker(&["run", "--rm", &image]);
    assert!(
        help.contains("Usage") && help.contains("process"),
        "with no arguments the image prints fetch-consumer's help: {help}"
    );
    let operator = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "fetch-operator",
        &image,
        "--help",
    ]);
    assert!(
        operator.contains("Usage"),
        "fetch-operator starts: {operator}"
    );
}

#[test]
fn process_over_the_sample_gives_the_documented_counts() {
    let image = e2e_image();
    let sample = shared_data(SAMPLE);
    let lines = std::fs::read_to_string(&sample)
        .unwrap_or_else(|e| panic!("reading {}: {e}", sample.display()))
        .lines()
        .count() as u64;
    let out = Scratch::new("process");
    let input = format!("{}:/data/{SAMPLE}:ro", sample.display());
    let output = format!("{}:/out", out.path().display());
    let args = [
        "run",
        "--rm",
        "-v",
        &input,
        "-v",
        &output,
        &image,
        "process",
        "--input",
        &format!("/data/{SAMPLE}"),
        "--output",
        "/out/clean.jsonl",
        "--dead-letter",
        "/out/rejected.jsonl",
    ];
    let result = run("docker", &args);
    let report = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "process exits 0 when lines are rejected: {:?}\n{report}",
        result.status
    );
    println!("{report}");

    let (read, cleaned, dead_lettered) = report_counts(&report);
    assert_eq!(read, lines, "every line of the sample is read");
    assert_eq!(cleaned + dead_lettered, read, "nothing lost: {report}");
    assert_eq!(
        (cleaned, dead_lettered),
        (SAMPLE_CLEANED, SAMPLE_DEAD_LETTERED),
        "the sample's documented counts"
    );

    let clean = json_lines(&out.path().join("clean.jsonl"));
    assert_eq!(
        clean.len() as u64,
        cleaned,
        "one output line per cleaned event"
    );
    assert!(
        clean.iter().all(|e| e["user_id"].is_string()),
        "every cleaned event has a user_id"
    );
    let rejected = json_lines(&out.path().join("rejected.jsonl"));
    assert_eq!(
        rejected.len() as u64,
        dead_lettered,
        "one dead-letter line per rejected event"
    );
    assert!(
        rejected
            .iter()
            .all(|r| r["reason"].is_string() && r["line"].is_u64()),
        "every dead letter says why and which line"
    );
}

#[test]
fn image_is_smaller_than_250_mb() {
    let image = e2e_image();
    let size: u64 = docker(&["image", "inspect", "--format", "{{.Size}}", &image])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("docker image inspect gave no size: {e}"));
    println!("{image}: {:.1} MB", size as f64 / 1e6);
    assert!(
        size < MAX_IMAGE_BYTES,
        "{image} is {size} bytes, more than {MAX_IMAGE_BYTES}"
    );
}
