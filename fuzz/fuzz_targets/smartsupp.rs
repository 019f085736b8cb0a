//! The Smartsupp source and the lenient tree it reads: any body either parses or is refused
//! with a reason, never a panic; the tree agrees with serde_json on every document serde_json
//! reads; and erasure's matcher reads any bytes.

#![no_main]

use chatbridge::sources::lenient::Node;
use chatbridge::sources::smartsupp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(parsed) = smartsupp::parse(body) {
        // What is stored: the normalized form always serializes and reads back.
        let normalized = serde_json::to_string(&parsed.conversation).expect("serializes");
        let _: serde_json::Value = serde_json::from_str(&normalized).expect("reads back");
        assert_eq!(
            smartsupp::conversation(body).expect("parses twice").id,
            parsed.conversation.id
        );
    }
    match (
        Node::parse(body),
        serde_json::from_slice::<serde_json::Value>(body),
    ) {
        (Ok(node), Ok(value)) => assert_eq!(node.to_value(), value),
        (Err(_), Err(_)) => {}
        (node, value) => panic!(
            "lenient {:?} but serde_json {:?}",
            node.is_ok(),
            value.is_ok()
        ),
    }
    let _ = chatbridge::privacy::mentions(body, "zoe.forgetme@example.com");
});
