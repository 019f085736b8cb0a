//! Every product's reader and the lenient tree they read: any body is read or refused with a
//! reason, never a panic; what is read serializes and reads back; the tree agrees with
//! serde_json on every document serde_json reads; LiveChat's secret check and erasure's
//! matcher take any bytes.

#![no_main]

use chatbridge::sources::lenient::Node;
use chatbridge::sources::signature::Secrets;
use chatbridge::sources::{Event, Source, livechat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    for source in Source::ALL {
        let Ok(document) = source.document(body.to_vec().into()) else {
            continue;
        };
        if let Ok(Event::Conversation(conversation)) = source.read(&document, "fuzz") {
            // What is stored: the normalized form always serializes and reads back.
            let normalized = serde_json::to_string(&conversation).expect("serializes");
            let _: serde_json::Value = serde_json::from_str(&normalized).expect("reads back");
            let again = source.read(&document, "fuzz").expect("reads twice");
            assert_eq!(again, Event::Conversation(conversation));
        }
    }
    let secrets = Secrets {
        current: "livechat-test-secret".into(),
        previous: None,
    };
    let _ = livechat::authenticate(&secrets, body);
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
