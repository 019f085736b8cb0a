//! The dashboard in a real headless Chromium, driven over the DevTools protocol by
//! Playwright (`tests/browser/dashboard.cjs`): log in, page through every conversation, find
//! the seed, retry its dead delivery once the target recovers, render in the template
//! playground; then what the browser lets an attacker try (a script reading the cookie, a
//! form on another site, a cookie kept after logout, a login leading off-site, guessing the
//! token), with a screenshot of each page.
//!
//! Needs Node.js with `playwright-core` and Debian's Chromium, so a plain `cargo test` ignores
//! it: `CHATBRIDGE_TEST_PLAYWRIGHT` names the `node_modules` folder holding playwright-core
//! (`.ci/run` installs the pinned version, sets it and runs the test with
//! `--include-ignored`), `CHATBRIDGE_TEST_SCREENSHOTS` where the screenshots go (default: a
//! temporary folder), `CHATBRIDGE_TEST_CHROMIUM` the browser (default `/usr/bin/chromium`).

use std::path::Path;
use std::process::Command;

use crate::helpers::{ADMIN_TOKEN, seed_of, spawn_app};
use chatbridge::store::DeliveryState;

/// Conversations in the store: the seed and others, enough for three pages of the list.
const CONVERSATIONS: u64 = 120;

#[tokio::test]
#[ignore = "needs Chromium and playwright-core: .ci/run installs them"]
async fn in_chromium_an_operator_works_and_an_attacker_gets_nowhere() {
    let modules = crate::helpers::required(
        "CHATBRIDGE_TEST_PLAYWRIGHT",
        "a node_modules folder with playwright-core",
    );
    let app = spawn_app().await;
    // The target refuses the first ticket for good, and has recovered by the retry.
    let dead = app.dead_seeds(1).await;
    for channel in 1..CONVERSATIONS {
        let email = format!("visitor{channel}@example.com");
        app.post_smartsupp(seed_of(channel, &email, "Dusan Kmet"))
            .await;
    }
    app.wait_for_deliveries(DeliveryState::Delivered, CONVERSATIONS as usize - 1)
        .await;

    let scratch = tempfile::tempdir().unwrap();
    let screenshots = std::env::var_os("CHATBRIDGE_TEST_SCREENSHOTS")
        .map_or_else(|| scratch.path().to_owned(), Into::into);
    std::fs::create_dir_all(&screenshots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.cjs");
    let mut command = Command::new("node");
    command
        .arg(script)
        .env("NODE_PATH", modules)
        .env("CHATBRIDGE_URL", &app.address)
        .env("CHATBRIDGE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("CHATBRIDGE_DEAD_DELIVERY", dead[0].id.to_string())
        .env("CHATBRIDGE_CONVERSATIONS", CONVERSATIONS.to_string())
        .env("CHATBRIDGE_SCREENSHOTS", &screenshots);
    if let Some(chromium) = std::env::var_os("CHATBRIDGE_TEST_CHROMIUM") {
        command.env("CHATBRIDGE_CHROMIUM", chromium);
    }
    // The app runs on this runtime: wait for the browser on a blocking thread.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("node runs");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser session failed");

    // What the clicks did, seen from the store and the target.
    let delivered = app.deliveries(Some(DeliveryState::Delivered)).await;
    assert_eq!(delivered.len() as u64, CONVERSATIONS);
    assert!(delivered.iter().any(|d| d.id == dead[0].id));
    assert_eq!(app.zendesk.tickets().len() as u64, CONVERSATIONS);
    for shot in [
        "1-login",
        "2-overview",
        "3-conversation-dead",
        "4-dead-letters",
        "5-conversation-delivered",
        "6-playground",
        "7-login-throttled",
    ] {
        let file = screenshots.join(format!("{shot}.png"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", file.display());
    }
}
