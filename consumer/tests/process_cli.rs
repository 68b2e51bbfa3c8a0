//! `fetch-consumer process` as a user runs it: files and pipes in, JSON lines and a report out.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events.jsonl");

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fetch-consumer"))
}

fn json_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

#[test]
fn fixture_lines_each_land_in_exactly_one_output_with_their_reason() {
    let dir = tempdir();
    let (out, dlq) = (dir.join("out.jsonl"), dir.join("dlq.jsonl"));
    let result = bin()
        .args(["process", "--input", FIXTURE, "--output"])
        .arg(&out)
        .arg("--dead-letter")
        .arg(&dlq)
        .output()
        .expect("run");
    assert!(
        result.status.success(),
        "rejections are data, not failures: {result:?}"
    );
    let cleaned = json_lines(&out);
    let dead = json_lines(&dlq);
    assert_eq!(cleaned.len() + dead.len(), 16);
    assert_eq!(cleaned.len(), 4);

    assert_eq!(cleaned[0]["login_time"], "2023-09-12T00:45:51Z");
    assert_eq!(cleaned[1]["device_type"], "ios");
    assert_eq!(cleaned[2]["device_type"], "unknown");
    assert_eq!(cleaned[2]["locale"], "PA");
    assert_eq!(cleaned[2]["ip"], Value::Null);
    assert_eq!(cleaned[2]["flags"], serde_json::json!(["invalid_ip"]));
    assert_eq!(cleaned[3]["ip"], "2001:db8::1");
    assert_eq!(cleaned[3]["app_version"], "unknown");

    let reasons: Vec<&str> = dead
        .iter()
        .map(|d| d["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(
        reasons,
        [
            "empty",
            "empty",
            "malformed_json",
            "not_an_object",
            "duplicate_field",
            "missing_user_id",
            "invalid_user_id",
            "missing_timestamp",
            "invalid_timestamp",
            "invalid_timestamp",
            "malformed_json",
            "invalid_utf8"
        ]
    );
    assert_eq!(dead[0]["line"], 5);
    assert_eq!(dead[2]["original"], "not json");
    assert!(
        dead[11]["original_base64"].is_string(),
        "invalid UTF-8 kept as base64"
    );

    let report = String::from_utf8_lossy(&result.stderr);
    assert!(
        report.contains("16 read, 4 cleaned, 12 dead-lettered"),
        "{report}"
    );
}

#[test]
fn reads_stdin_and_writes_stdout() {
    let dir = tempdir();
    let mut child = bin()
        .args(["process", "--dead-letter"])
        .arg(dir.join("dlq.jsonl"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"{\"user_id\":\"u\",\"timestamp\":1730326892}\nnope\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert_eq!(json_lines(&dir.join("dlq.jsonl")).len(), 1);
}

#[test]
fn io_and_usage_errors_fail_with_a_message() {
    let missing = bin()
        .args([
            "process",
            "--input",
            "/no/such/file",
            "--dead-letter",
            "/dev/null",
        ])
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/file"));

    let no_dlq = bin()
        .args(["process", "--input", FIXTURE])
        .output()
        .expect("run");
    assert_eq!(no_dlq.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_dlq.stderr).contains("--dead-letter"));

    let hash_without_key = bin()
        .args([
            "process",
            "--input",
            FIXTURE,
            "--dead-letter",
            "/dev/null",
            "--pii-mode",
            "hash",
        ])
        .env_remove("FETCH_PII_HASH_KEY")
        .output()
        .expect("run");
    assert_eq!(hash_without_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&hash_without_key.stderr).contains("FETCH_PII_HASH_KEY"));
}

#[test]
fn pii_hash_mode_hides_values_but_keeps_them_joinable() {
    let run = |key: &str| {
        let out = bin()
            .args([
                "process",
                "--input",
                FIXTURE,
                "--dead-letter",
                "/dev/null",
                "--pii-mode",
                "hash",
            ])
            .env("FETCH_PII_HASH_KEY", key)
            .output()
            .expect("run");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("json"))
            .collect::<Vec<_>>()
    };
    let a = run("secret-1");
    assert_ne!(a[0]["ip"], "199.172.111.135");
    assert_eq!(
        a[1]["device_id"], a[2]["device_id"],
        "same device, same hash"
    );
    assert_ne!(run("secret-2")[0]["ip"], a[0]["ip"]);
}

#[test]
fn generate_to_a_file_feeds_process() {
    let dir = tempdir();
    let events = dir.join("events.jsonl");
    let gen_status = bin()
        .args([
            "generate",
            "--rate",
            "0",
            "--count",
            "500",
            "--seed",
            "3",
            "--malformed",
            "0.1",
            "--output",
        ])
        .arg(&events)
        .status()
        .expect("generate");
    assert!(gen_status.success());
    let insights = dir.join("insights.json");
    let out = bin()
        .args([
            "process",
            "--dead-letter",
            "/dev/null",
            "--output",
            "/dev/null",
            "--input",
        ])
        .arg(&events)
        .arg("--insights-out")
        .arg(&insights)
        .output()
        .expect("process");
    assert!(out.status.success());
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&insights).expect("read")).expect("json");
    let rejected: u64 = saved["rejected"]
        .as_object()
        .expect("map")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(saved["cleaned"].as_u64().expect("count") + rejected, 500);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fetch-consumer-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP/HTTP: a local
/// listener stands in for the collector and must receive a POST to /v1/traces.
#[test]
fn exports_traces_over_otlp_when_configured() {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let collector = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut request_line = String::new();
        reader.read_line(&mut request_line).expect("read");
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).expect("header");
            if header.trim().is_empty() {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .expect("respond");
        (request_line, body)
    });
    let out = bin()
        .args([
            "process",
            "--input",
            FIXTURE,
            "--output",
            "/dev/null",
            "--dead-letter",
            "/dev/null",
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_SERVICE_NAME", "fetch-consumer-test")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (request_line, body) = collector.join().expect("collector");
    assert!(
        request_line.starts_with("POST /v1/traces "),
        "{request_line}"
    );
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("process_lines"), "the span is in the export");
}

/// `generate --output` with no count runs until stopped; SIGTERM stops it cleanly, leaving a
/// file of whole events (the buffered writer used to be cut off mid-line).
#[test]
fn generate_to_a_file_stops_on_sigterm_with_whole_lines() {
    let dir = tempdir();
    let events = dir.join("endless.jsonl");
    let mut child = bin()
        .args(["generate", "--rate", "0", "--seed", "5", "--output"])
        .arg(&events)
        .spawn()
        .expect("generate");
    // Until it has written a few buffers' worth, so a cut would show.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::metadata(&events).map_or(0, |m| m.len()) < 1 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "generate wrote nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "a clean stop");
    let text = std::fs::read_to_string(&events).expect("read");
    assert!(text.ends_with('\n'), "the last line is whole");
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    }
}
