//! The listener's bounds, tried as a hostile client would: a wrong token answered before a
//! byte of the body is read, half-sent heads and silent connections cut off, a trickled body
//! answered 408, and connections past the cap left waiting until one closes.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{HOOK_TOKEN, Options, PATIENCE, TestApp, spawn_app_with};

async fn app_with(server: &str) -> TestApp {
    spawn_app_with(Options {
        server: server.into(),
        ..Options::default()
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// What the server sends until it closes the connection, or fails the test after
/// [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server closed the connection in time")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The head of the first answer on `stream`, waiting for it for up to [`PATIENCE`].
async fn read_head(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(PATIENCE, async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "closed before answering");
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("an answer in time");
    String::from_utf8_lossy(&answer).into_owned()
}

fn post_head(token: &str, length: usize) -> String {
    format!(
        "POST /hooks/smartsupp/{token} HTTP/1.1\r\nHost: chatbridge\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_wrong_token_is_answered_before_its_body_is_sent() {
    let app = app_with("").await;
    let mut stream = connect(&app).await;
    // Two MiB announced, ten bytes sent: the answer cannot wait for the rest.
    stream
        .write_all(post_head("wrong-token", 2 * 1024 * 1024).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"accountI").await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
}

#[tokio::test]
async fn a_half_sent_head_and_a_silent_connection_are_closed() {
    let app = app_with("header_read_timeout = \"300ms\"\nidle_timeout = \"500ms\"").await;
    let mut half = connect(&app).await;
    half.write_all(b"POST /hooks/smartsupp/x HTTP/1.1\r\nHost: chatbridge\r\n")
        .await
        .unwrap();
    let mut silent = connect(&app).await;
    assert_eq!(read_until_closed(&mut half).await, "");
    assert_eq!(read_until_closed(&mut silent).await, "");

    // A kept-alive connection serves requests and then closes once idle.
    let mut kept = connect(&app).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: chatbridge\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut kept).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_trickled_body_is_answered_408_and_nothing_is_kept() {
    let app = app_with("body_read_timeout = \"300ms\"").await;
    let mut stream = connect(&app).await;
    stream
        .write_all(post_head(HOOK_TOKEN, 1000).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"accountId\": 208").await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    // Half a body is no chat: nothing stored, nothing quarantined.
    assert!(app.store.quarantined(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn past_the_connection_cap_a_client_waits_until_a_connection_closes() {
    let app = app_with("max_connections = 2").await;
    let first = connect(&app).await;
    let mut second = connect(&app).await;
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: chatbridge\r\n\r\n")
        .await
        .unwrap();
    // The second was accepted: the first and second hold both places.
    assert!(read_head(&mut second).await.starts_with("HTTP/1.1 200"));

    let url = format!("{}/healthz", app.address);
    let third = tokio::spawn(async move { reqwest::get(url).await.unwrap().status() });
    // Not proof that it would never be served, but a server without the cap answers a
    // health check in far less.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served at the cap"
    );
    drop(first);
    let status = tokio::time::timeout(PATIENCE, third)
        .await
        .expect("served once a place was free")
        .unwrap();
    assert_eq!(status, 200);
}
