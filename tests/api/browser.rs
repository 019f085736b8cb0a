//! The dashboard in a real headless Chromium, driven over the DevTools protocol by
//! Playwright (`tests/browser/dashboard.cjs`): log in, find the seed conversation, retry its
//! dead delivery once the target recovers, and render in the template playground, with a
//! screenshot of each page.
//!
//! Needs Node.js with `playwright-core` and Debian's Chromium: `CHATBRIDGE_TEST_PLAYWRIGHT`
//! names the `node_modules` folder holding playwright-core (`.ci/run` installs the pinned
//! version and sets it), `CHATBRIDGE_TEST_SCREENSHOTS` where the screenshots go (default: a
//! temporary folder), `CHATBRIDGE_TEST_CHROMIUM` the browser (default `/usr/bin/chromium`).

use std::path::Path;
use std::process::Command;

use crate::helpers::{ADMIN_TOKEN, counterpart, spawn_app};
use chatbridge::store::DeliveryState;

#[tokio::test]
async fn in_chromium_an_operator_logs_in_finds_the_seed_retries_it_and_renders_a_template() {
    let Some(modules) = counterpart(
        "CHATBRIDGE_TEST_PLAYWRIGHT",
        "a node_modules folder with playwright-core to drive Chromium",
    ) else {
        return;
    };
    let app = spawn_app().await;
    // The target refuses the first ticket for good, and has recovered by the retry.
    let dead = app.dead_seeds(1).await;

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
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].id, dead[0].id);
    assert_eq!(app.zendesk.tickets().len(), 1);
    for shot in [
        "1-login",
        "2-overview",
        "3-conversation-dead",
        "4-dead-letters",
        "5-conversation-delivered",
        "6-playground",
    ] {
        let file = screenshots.join(format!("{shot}.png"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", file.display());
    }
}
