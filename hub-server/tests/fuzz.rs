//! Property-based fuzzing of what a hostile client controls: the frames the
//! hub decodes and the ops it validates. Nothing may panic, and a refused op
//! must leave the document exactly as it was.

use chorus_hub::document::Document;
use chorus_protocol::ot::WireOp;
use chorus_protocol::wire::ClientMsg;
use proptest::prelude::*;

/// JSON-ish text: mostly structural characters and message words, so that
/// the fuzzer reaches deep into the decoder, not just its first byte.
fn frame() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"type\"".to_owned()),
        Just("\"op\"".to_owned()),
        Just("\"open\"".to_owned()),
        Just("\"hello\"".to_owned()),
        Just("\"doc\"".to_owned()),
        Just("\"rev\"".to_owned()),
        Just("\"text\"".to_owned()),
        Just("\"put\"".to_owned()),
        Just("\"files\"".to_owned()),
        Just("\"path\"".to_owned()),
        Just("\"content\"".to_owned()),
        Just("\"kind\"".to_owned()),
        Just("\"binary\"".to_owned()),
        Just("\"tooLarge\"".to_owned()),
        Just("\"size\"".to_owned()),
        Just("\"rename\"".to_owned()),
        Just("\"delete\"".to_owned()),
        Just("\"from\"".to_owned()),
        Just("\"to\"".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1e308".to_owned()),
        Just("null".to_owned()),
        "-?[0-9]{1,20}",
        "\"[a-z😀\\\\\"/.]{0,6}\"",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|parts| parts.concat())
}

/// Ot.js-shaped arrays with arbitrary, often invalid, components.
fn op_json() -> impl Strategy<Value = String> {
    let component = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-8i64..8).prop_map(|n| n.to_string()),
        "\"[a-z😀\\r\\n]{0,3}\"",
        Just("0".to_owned()),
        Just("1.5".to_owned()),
    ];
    proptest::collection::vec(component, 0..8).prop_map(|c| format!("[{}]", c.join(",")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_never_panics(text in frame()) {
        let _ = ClientMsg::decode(&text);
    }

    #[test]
    fn op_messages_never_panic(json in op_json(), rev in 0u64..4) {
        let frame = format!(r#"{{"type":"op","doc":"a.txt","rev":{rev},"op":{json}}}"#);
        let _ = ClientMsg::decode(&frame);
    }

    #[test]
    fn refused_ops_change_nothing(
        start in "[a-z😀\n]{0,8}",
        json in op_json(),
        base in 0u64..4,
        first in op_json(),
    ) {
        let mut doc = Document::new(&start, 16);
        // Sometimes one valid op first, so that transforms run too.
        if let Ok(op) = serde_json::from_str::<WireOp>(&first) {
            let _ = doc.apply(0, op.0, None);
        }
        let Ok(op) = serde_json::from_str::<WireOp>(&json) else {
            return Ok(());
        };
        let (text, rev) = (doc.text().to_string(), doc.rev());
        if doc.apply(base, op.0, None).is_err() {
            prop_assert_eq!(doc.text().to_string(), text);
            prop_assert_eq!(doc.rev(), rev);
        } else {
            prop_assert_eq!(doc.rev(), rev + 1);
        }
    }
}
