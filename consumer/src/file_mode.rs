//! `fetch-consumer process`: the processing core over JSON lines, no broker needed.
//!
//! Each input line is one event, an empty line included. Cleaned events go to the output as
//! JSON lines; rejected lines go to the dead-letter output as [`FileRecord`] JSON lines. Lines
//! longer than the event size limit are not held whole in memory: the reader keeps their start
//! (enough to reject them as `too_large` and show what they were) and skips the rest.

use std::io::{BufRead, Write};
use std::time::Instant;

use crate::dead_letter::FileRecord;
use crate::error::{Error, Result};
use crate::insights::Throughput;
use crate::processor::{Processor, Routed};

/// What a file run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStats {
    pub lines: u64,
    pub cleaned: u64,
    pub dead_lettered: u64,
}

/// Processes every line of `input`. I/O errors stop the run; rejected lines do not.
pub fn process_lines(
    processor: &mut Processor,
    input: &mut impl BufRead,
    output: &mut impl Write,
    dead_letter: &mut impl Write,
) -> Result<(FileStats, Throughput)> {
    let _span = tracing::info_span!("process_lines").entered();
    let started = Instant::now();
    let keep = processor.cleaner().max_event_bytes().saturating_add(1);
    let mut stats = FileStats::default();
    let mut line = Vec::with_capacity(1024);
    while let Some(full_length) =
        read_line(input, &mut line, keep).map_err(Error::io("reading input"))?
    {
        stats.lines += 1;
        match processor.process(&line) {
            Routed::Output { value, .. } => {
                stats.cleaned += 1;
                output
                    .write_all(value)
                    .map_err(Error::io("writing output"))?;
                output
                    .write_all(b"\n")
                    .map_err(Error::io("writing output"))?;
            }
            Routed::DeadLetter(rejection) => {
                stats.dead_lettered += 1;
                let record = FileRecord::new(&rejection, stats.lines, &line, full_length);
                serde_json::to_writer(&mut *dead_letter, &record)
                    .map_err(|e| Error::io("writing dead letters")(e.into()))?;
                dead_letter
                    .write_all(b"\n")
                    .map_err(Error::io("writing dead letters"))?;
            }
        }
    }
    output.flush().map_err(Error::io("writing output"))?;
    dead_letter
        .flush()
        .map_err(Error::io("writing dead letters"))?;
    let throughput = Throughput {
        records: stats.lines,
        elapsed: started.elapsed(),
    };
    Ok((stats, throughput))
}

/// Reads one line into `buf` (without its `\n`), keeping at most `keep` bytes of it.
/// Returns the line's full length, or `None` at the end of input. A final line without a
/// newline counts; an input ending in a newline has no extra empty line after it.
fn read_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    keep: usize,
) -> std::io::Result<Option<u64>> {
    buf.clear();
    let mut length = 0u64;
    let mut saw_any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(saw_any.then_some(length));
        }
        saw_any = true;
        let (part, consumed, done) = match memchr(chunk) {
            Some(nl) => (&chunk[..nl], nl + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let room = keep.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        length += part.len() as u64;
        input.consume(consumed);
        if done {
            return Ok(Some(length));
        }
    }
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::Cleaner;
    use crate::insights::Insights;
    use crate::pii::PiiPolicy;

    fn run(input: &[u8], max: usize) -> (FileStats, String, String) {
        let mut p = Processor::new(Cleaner::new(max, PiiPolicy::Keep), Insights::default());
        let (mut out, mut dlq) = (Vec::new(), Vec::new());
        let (stats, _) = process_lines(&mut p, &mut &input[..], &mut out, &mut dlq).expect("io");
        (
            stats,
            String::from_utf8(out).expect("utf8"),
            String::from_utf8(dlq).expect("utf8"),
        )
    }

    #[test]
    fn every_line_ends_in_exactly_one_output() {
        let input = b"{\"user_id\":\"a\",\"timestamp\":1730326892}\n\n{bad\n\xff\n{\"user_id\":\"b\",\"timestamp\":\"1730326892\"}";
        let (stats, out, dlq) = run(input, 1024);
        assert_eq!(
            stats,
            FileStats {
                lines: 5,
                cleaned: 2,
                dead_lettered: 3
            }
        );
        assert_eq!(out.lines().count(), 2);
        let reasons: Vec<_> = dlq
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["reason"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(reasons, ["empty", "malformed_json", "invalid_utf8"]);
        assert!(dlq.contains(r#""line":2"#));
    }

    #[test]
    fn trailing_newline_adds_no_event() {
        assert_eq!(run(b"{}\n", 64).0.lines, 1);
        assert_eq!(run(b"", 64).0.lines, 0);
        assert_eq!(run(b"\n", 64).0.lines, 1);
    }

    #[test]
    fn long_lines_are_cut_and_rejected_without_being_held() {
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\n{\"user_id\":\"a\",\"timestamp\":1730326892}\n");
        let mut reader = std::io::BufReader::with_capacity(16, &input[..]);
        let mut line = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut line, 11).expect("io"),
            Some(100_000)
        );
        assert_eq!(line.len(), 11);
        let (stats, out, dlq) = run(&input, 10);
        assert_eq!((stats.cleaned, stats.dead_lettered), (0, 2));
        assert!(out.is_empty());
        assert!(dlq.contains(r#""original_length":100000"#), "{dlq}");
    }
}
