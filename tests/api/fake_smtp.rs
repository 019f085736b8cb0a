//! A local SMTP server that answers like a submission server (RFC 5321 and 4954, no TLS):
//! EHLO with AUTH PLAIN, one user, and a scripted reply to the end of each message's data
//! (a 4xx, a 5xx, or a lost answer: the message is kept, the connection dropped before the
//! reply). It keeps every message it accepted, raw, to be read back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The reply to the end of the next message's data.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This reply line, instead of 250 (the message is not kept).
    Code(&'static str),
    /// Keep the message, then drop the connection without replying.
    KeepAndHangUp,
}

#[derive(Default)]
struct State {
    messages: Vec<String>,
    script: VecDeque<Reply>,
}

pub struct FakeSmtp {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeSmtp {
    /// Starts on a free loopback port, accepting `user` with `password`.
    pub async fn start(user: &str, password: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let credentials = format!("\0{user}\0{password}");
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone(), credentials.clone()));
            }
        });
        Self { port, state }
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Every message kept, as received (headers and body).
    pub fn messages(&self) -> Vec<String> {
        self.state.lock().unwrap().messages.clone()
    }
}

async fn session(stream: TcpStream, state: Arc<Mutex<State>>, credentials: String) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let say = async |write: &mut tokio::net::tcp::OwnedWriteHalf, text: &str| {
        write
            .write_all(format!("{text}\r\n").as_bytes())
            .await
            .is_ok()
    };
    if !say(&mut write, "220 fake-smtp.test ESMTP ready").await {
        return;
    }
    let mut authenticated = false;
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-fake-smtp.test\r\n250-AUTH PLAIN\r\n250-8BITMIME\r\n250 SIZE 10485760".to_owned()
        } else if let Some(encoded) = line.strip_prefix("AUTH PLAIN ") {
            let given = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .unwrap_or_default();
            if given == credentials.as_bytes() {
                authenticated = true;
                "235 2.7.0 Authentication successful".to_owned()
            } else {
                "535 5.7.8 Authentication credentials invalid".to_owned()
            }
        } else if upper.starts_with("MAIL FROM") {
            if authenticated {
                "250 2.1.0 OK".to_owned()
            } else {
                "530 5.7.0 Authentication required".to_owned()
            }
        } else if upper.starts_with("RCPT TO") {
            "250 2.1.5 OK".to_owned()
        } else if upper == "DATA" {
            if !say(&mut write, "354 End data with <CR><LF>.<CR><LF>").await {
                return;
            }
            let mut message = String::new();
            while let Ok(Some(data)) = lines.next_line().await {
                if data == "." {
                    break;
                }
                message.push_str(data.strip_prefix('.').unwrap_or(&data));
                message.push('\n');
            }
            let scripted = state.lock().unwrap().script.pop_front();
            match scripted {
                Some(Reply::Code(code)) => code.to_owned(),
                Some(Reply::KeepAndHangUp) => {
                    state.lock().unwrap().messages.push(message);
                    return;
                }
                None => {
                    state.lock().unwrap().messages.push(message);
                    "250 2.0.0 Ok: queued".to_owned()
                }
            }
        } else if upper == "QUIT" {
            let _ = say(&mut write, "221 2.0.0 Bye").await;
            return;
        } else {
            "250 2.0.0 OK".to_owned()
        };
        if !say(&mut write, &reply).await {
            return;
        }
    }
}
