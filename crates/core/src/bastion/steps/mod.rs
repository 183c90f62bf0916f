//! The bastion watch's steps, one module per Lambda (`functions/bastion/<step>`): each has
//! `Deps` (built once, `Deps::from_env`), a strict `Input`, an `Output` and `handle`.
//!
//! - [`watch_login`]: CloudTrail `ExecuteCommand` → start the watch named after the session;
//! - [`open_session`]: record the session, post the login;
//! - [`session_deadline`]: the approval wait, the reminder, the alert, the confirmation;
//! - [`slack_events`]: the Slack Events endpoint judging replies in login threads;
//! - [`command_watch`]: dangerous commands in transcripts and console hook lines;
//! - [`hook_watch`]: the schedule that alerts a session the console hook is silent on.

pub mod command_watch;
pub mod hook_watch;
pub mod open_session;
pub mod session_deadline;
pub mod slack_events;
pub mod watch_login;

#[cfg(test)]
pub(crate) mod fake_slack {
    //! A loopback Slack Web API that answers every call `ok` (with a `ts`, the channel and a
    //! permalink) and records each call's method and JSON body.

    use std::sync::{Arc, Mutex};

    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::platform::slack::SlackClient;

    #[derive(Clone, Default)]
    pub struct Calls(Arc<Mutex<Vec<(String, Value)>>>);

    impl Calls {
        pub fn all(&self) -> Vec<(String, Value)> {
            self.0.lock().unwrap().clone()
        }
        pub fn of(&self, method: &str) -> Vec<Value> {
            self.all()
                .into_iter()
                .filter(|(m, _)| m == method)
                .map(|(_, b)| b)
                .collect()
        }
    }

    /// A client of a fake Slack; `fail`: every call answers `ok: false`.
    pub async fn start(fail: bool) -> (SlackClient, Calls) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Calls::default();
        let recorded = calls.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while let Ok((mut sock, _)) = listener.accept().await {
                n += 1;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Read the head, then the body its Content-Length announces.
                let (head_end, length) = loop {
                    let got = sock.read(&mut chunk).await.unwrap_or(0);
                    if got == 0 {
                        break (buf.len(), 0);
                    }
                    buf.extend_from_slice(&chunk[..got]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let got = sock.read(&mut chunk).await.unwrap_or(0);
                    if got == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..got]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let method = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                let channel = body["channel"].as_str().unwrap_or("C0").to_string();
                recorded.0.lock().unwrap().push((method, body));
                let answer = if fail {
                    json!({"ok": false, "error": "service_unavailable"})
                } else {
                    json!({"ok": true, "channel": channel, "ts": format!("1700000000.{n:06}"),
                           "permalink": format!("https://slack.example/p{n}")})
                }
                .to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            }
        });
        (
            SlackClient::new(format!("http://{addr}/api"), "xoxb-test"),
            calls,
        )
    }
}
