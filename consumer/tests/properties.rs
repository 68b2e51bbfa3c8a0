//! Properties of the processing core over arbitrary input.

use fetch_consumer::clean::Cleaner;
use fetch_consumer::event::{RawEvent, flat};
use fetch_consumer::file_mode::process_lines;
use fetch_consumer::insights::Insights;
use fetch_consumer::output_json;
use fetch_consumer::processor::Processor;
use proptest::prelude::*;

fn json_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        ".*".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        (946_684_800i64..4_102_444_800).prop_map(|t| format!("\"{t}\"")),
        (946_684_800i64..4_102_444_800).prop_map(|t| t.to_string()),
        Just("[[{}]]".to_owned()),
    ]
}

/// Objects with the event's keys (and others), each holding any kind of value.
fn event_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("user_id"),
        Just("app_version"),
        Just("device_type"),
        Just("ip"),
        Just("locale"),
        Just("device_id"),
        Just("timestamp"),
        Just("other"),
    ];
    prop::collection::vec((key, json_scalar()), 0..10).prop_map(|fields| {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Cleaner::default().clean(&bytes);
    }

    #[test]
    fn every_line_lands_in_exactly_one_output(lines in prop::collection::vec(
        prop_oneof![event_like().prop_map(String::into_bytes), prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..64)],
        0..20,
    )) {
        let input = lines.join(&b'\n');
        let mut processor = Processor::with_insights_thread(Cleaner::default(), Insights::new(16)).expect("thread");
        let (mut out, mut dlq) = (Vec::new(), Vec::new());
        let (stats, _) = process_lines(&mut processor, &mut &input[..], &mut out, &mut dlq).expect("in-memory I/O");
        // A final newline ends the last line rather than starting an empty one.
        let newlines = input.iter().filter(|b| **b == b'\n').count() as u64;
        let expected_lines = newlines + u64::from(input.last().is_some_and(|b| *b != b'\n'));
        prop_assert_eq!(stats.lines, expected_lines);
        prop_assert_eq!(stats.cleaned + stats.dead_lettered, stats.lines);
        prop_assert_eq!(out.iter().filter(|b| **b == b'\n').count() as u64, stats.cleaned);
        prop_assert_eq!(dlq.iter().filter(|b| **b == b'\n').count() as u64, stats.dead_lettered);
        prop_assert_eq!(processor.into_insights().cleaned, stats.cleaned);
    }

    /// The fast parse path agrees with serde_json wherever it answers (escapes, signs,
    /// fractions and nesting included in the inputs, which it leaves to serde_json).
    #[test]
    fn the_fast_parse_path_agrees_with_serde_json(text in event_like()) {
        if let Some(fast) = flat::parse(&text) {
            prop_assert_eq!(Ok(fast), RawEvent::parse_reference(&text));
        }
    }

    /// Cleaning is idempotent: a cleaned event cleans to itself (but for `flags`, which say
    /// what was dropped from the input at hand).
    #[test]
    fn cleaned_output_is_a_fixed_point(text in event_like()) {
        let cleaner = Cleaner::default();
        if let Ok(mut event) = cleaner.clean(text.as_bytes()) {
            let once = serde_json::to_vec(&event).expect("serialize");
            let again = cleaner.clean(&once).expect("cleaned output is valid input");
            prop_assert!(again.flags.is_empty());
            event.flags = Default::default();
            prop_assert_eq!(again, event);
        }
    }

    /// The hand-written output encoder writes exactly what serde_json makes of the event.
    #[test]
    fn output_encoder_matches_serde_json(text in event_like()) {
        if let Ok(event) = Cleaner::default().clean(text.as_bytes()) {
            let mut ours = Vec::new();
            output_json::write_event(&mut ours, &event);
            prop_assert_eq!(String::from_utf8(ours).expect("utf-8"), serde_json::to_string(&event).expect("serialize"));
        }
    }

    /// Strings known plain hold nothing JSON escapes: the output writer copies them unchecked.
    #[test]
    fn strings_known_plain_need_no_escaping(text in event_like()) {
        if let Ok(event) = Cleaner::default().clean(text.as_bytes()) {
            let strings = [
                Some(&event.user_id),
                Some(&event.app_version),
                Some(&event.device_type),
                event.ip.as_ref(),
                Some(&event.locale),
                event.device_id.as_ref(),
            ];
            for s in strings.into_iter().flatten().filter(|_| event.known_plain.0) {
                prop_assert!(!s.chars().any(|c| c < ' ' || c == '"' || c == '\\'), "{:?}", s);
            }
        }
    }
}
