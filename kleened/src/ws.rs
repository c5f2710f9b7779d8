//! kleened's WebSocket protocol, shared by `/exec/start`, `/images/build` and
//! `/images/create`: the client's first frame is the JSON configuration; the server
//! answers a `starting` message, streams raw output as text frames and closes with a
//! `closing` message (code 1000) or an `error` message (1011 for a failure while
//! processing, 1002 for an invalid configuration, before anything started).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::response::IntoResponse;
use kleene_api::WebSocketMessage;
use serde::{Deserialize, Deserializer};

use crate::api::ApiError;

/// The answer to a request for a WebSocket endpoint that is not a WebSocket upgrade:
/// its status (400, 426, ...) with a `{"message": ...}` body.
pub fn not_an_upgrade(path: &str, rejection: WebSocketUpgradeRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        format!(
            "{path} is a websocket endpoint: {}",
            rejection.body_text().to_lowercase()
        ),
    )
}

/// Upgrades a request for the WebSocket endpoint `path` and runs `session` on it, or
/// answers why it cannot.
pub fn upgrade<F, Fut>(
    path: &str,
    upgrade: Result<axum::extract::WebSocketUpgrade, WebSocketUpgradeRejection>,
    session: F,
) -> axum::response::Response
where
    F: FnOnce(WebSocket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    match upgrade {
        Ok(u) => u.on_upgrade(session),
        Err(r) => not_an_upgrade(path, r).into_response(),
    }
}

/// The WebSocket sessions in progress, and the daemon's word that it is stopping:
/// sessions end (their builds and image creations interrupted, their exec processes
/// stopped, containers left running) with a close frame `1001` when told, and the
/// daemon waits for them before it exits.
#[derive(Debug, Clone)]
pub struct Sessions {
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    live: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            stop: Arc::new(tokio::sync::watch::Sender::new(false)),
            live: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

/// A session in progress; it ends when this is dropped.
#[derive(Debug)]
pub struct SessionGuard {
    live: Arc<tokio::sync::watch::Sender<usize>>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl SessionGuard {
    /// Completes when the daemon is stopping (at once if it is).
    pub async fn stopping(&mut self) {
        let _ = self.stop.wait_for(|s| *s).await;
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Sessions {
    /// Counts a session in until the guard is dropped.
    pub fn enter(&self) -> SessionGuard {
        self.live.send_modify(|n| *n += 1);
        SessionGuard {
            live: Arc::clone(&self.live),
            stop: self.stop.subscribe(),
        }
    }

    /// How many sessions are in progress.
    pub fn live(&self) -> usize {
        *self.live.borrow()
    }

    /// Tells every session, present and future, that the daemon is stopping.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Waits until no session is left, or `timeout`; whether none is left.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let mut rx = self.live.subscribe();
        let drained = tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok();
        drained
    }
}

/// The close frame of a session the daemon's stop ends.
pub fn shutting_down() -> Message {
    close(GOING_AWAY, "error", "kleened is shutting down", "")
}

/// Close code: done.
pub const NORMAL: u16 = 1000;
/// Close code: a detached exec instance was started, nothing follows.
pub const GOING_AWAY: u16 = 1001;
/// Close code: the configuration frame was invalid.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Close code: the request failed while it was processed.
pub const INTERNAL_ERROR: u16 = 1011;

/// The longest close reason a close frame carries (125 bytes of payload less the code).
pub const MAX_REASON: usize = 123;

/// How long the first frame (the configuration) may take to arrive.
pub const CONFIG_TIMEOUT: Duration = Duration::from_secs(60);

/// A `WebSocketMessage` as JSON text.
fn message_text(msg_type: &str, message: &str, data: &str) -> String {
    serde_json::to_string(&WebSocketMessage {
        msg_type: msg_type.into(),
        message: message.into(),
        data: data.into(),
    })
    .unwrap_or_default()
}

/// The `starting` message.
pub fn starting(data: &str) -> Message {
    Message::Text(message_text("starting", "", data).into())
}

/// A close frame with `code` and a `msg_type` message as its reason. A message too long
/// for the reason is cut at a character boundary (the caller sends it whole as a text
/// frame first when it matters).
pub fn close(code: u16, msg_type: &str, message: &str, data: &str) -> Message {
    let mut message = message.to_string();
    let mut reason = message_text(msg_type, &message, data);
    while reason.len() > MAX_REASON && !message.is_empty() {
        let over = reason.len() - MAX_REASON;
        let mut keep = message.len().saturating_sub(over.max(1));
        while !message.is_char_boundary(keep) {
            keep -= 1;
        }
        message.truncate(keep);
        reason = message_text(msg_type, &message, data);
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

/// Reads the configuration frame: `Err` is the close message to answer with (invalid
/// JSON or shape, 1002), `Ok(None)` a client that went away first.
pub async fn read_config<T: serde::de::DeserializeOwned>(
    socket: &mut WebSocket,
) -> Result<Option<T>, Message> {
    let first = tokio::time::timeout(CONFIG_TIMEOUT, async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(t))) => return Some(t.as_bytes().to_vec()),
                Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            }
        }
    })
    .await;
    let Ok(first) = first else {
        return Err(close(
            PROTOCOL_ERROR,
            "error",
            "no configuration received within 60 seconds",
            "",
        ));
    };
    let Some(raw) = first else {
        return Ok(None);
    };
    match serde_json::from_slice::<T>(&raw) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let what = if e.is_data() {
                "invalid parameters"
            } else {
                "invalid json"
            };
            let detail = format!("{what}: {e}");
            // The whole error as a text frame, the kind of error as the reason.
            let _ = socket.send(Message::Text(detail.clone().into())).await;
            Err(close(PROTOCOL_ERROR, "error", &detail, ""))
        }
    }
}

/// Reads the configuration frame and makes the request of it with `make`: `Err` is the
/// close message to answer with (1002: invalid JSON or shape, or a request `make`
/// refuses, whose reason goes first as a text frame), `Ok(None)` a client that went away.
pub async fn read_request<T, R>(
    socket: &mut WebSocket,
    make: impl FnOnce(T) -> Result<R, String>,
) -> Result<Option<R>, Message>
where
    T: serde::de::DeserializeOwned,
{
    let Some(config) = read_config::<T>(socket).await? else {
        return Ok(None);
    };
    match make(config) {
        Ok(r) => Ok(Some(r)),
        Err(reason) => {
            let _ = socket.send(Message::Text(reason.clone().into())).await;
            Err(close(
                PROTOCOL_ERROR,
                "error",
                &format!("invalid parameters: {reason}"),
                "",
            ))
        }
    }
}

/// Sends the close frame and waits briefly for the client's answer, so that the close
/// handshake completes before the connection is dropped.
pub async fn finish(mut socket: WebSocket, close: Message) {
    if socket.send(close).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// A boolean that may also come as the strings `"true"` and `"false"` (the PyPI klee
/// sends `start_container` and `quiet` as strings; kleened's OpenAPI casting takes
/// both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LooseBool(pub bool);

impl<'de> Deserialize<'de> for LooseBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Bool(bool),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Bool(b) => Ok(LooseBool(b)),
            Either::Text(t) => match t.as_str() {
                "true" => Ok(LooseBool(true)),
                "false" => Ok(LooseBool(false)),
                other => Err(serde::de::Error::custom(format!(
                    "expected a boolean, got {other:?}"
                ))),
            },
        }
    }
}

/// Turns a byte stream into text frames: whole UTF-8 characters are sent, a character
/// split between two reads waits for its end, and invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Chunker {
    pending: Vec<u8>,
}

impl Utf8Chunker {
    /// The text of `bytes` (after what was pending) that can be sent now.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: kept for the next read.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn characters_split_between_reads_are_joined() {
        let mut c = Utf8Chunker::default();
        let text = "añb€";
        let b = text.as_bytes();
        let mut out = String::new();
        for byte in b {
            out.push_str(&c.push(std::slice::from_ref(byte)));
        }
        out.push_str(&c.finish());
        assert_eq!(out, text);
        assert_eq!(c.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(c.push(b"\xe2\x82"), "");
        assert_eq!(c.finish(), "\u{fffd}");
    }

    #[test]
    fn close_reasons_fit_in_a_frame() {
        let long = "x".repeat(500);
        let Message::Close(Some(frame)) = close(INTERNAL_ERROR, "error", &long, "@abc") else {
            panic!("a close frame");
        };
        assert!(frame.reason.len() <= MAX_REASON, "{}", frame.reason.len());
        let m: WebSocketMessage = serde_json::from_str(frame.reason.as_str()).unwrap();
        assert_eq!(m.msg_type, "error");
        assert_eq!(m.data, "@abc");
        assert!(m.message.starts_with("xxx"));
        let Message::Close(Some(frame)) = close(NORMAL, "closing", "image created", "abc") else {
            panic!("a close frame");
        };
        assert_eq!(
            frame.reason.as_str(),
            r#"{"msg_type":"closing","message":"image created","data":"abc"}"#
        );
        // Multi-byte characters are cut whole.
        let wide = "é".repeat(100);
        let Message::Close(Some(frame)) = close(NORMAL, "closing", &wide, "") else {
            panic!("a close frame");
        };
        assert!(frame.reason.len() <= MAX_REASON);
    }

    #[test]
    fn loose_booleans() {
        #[derive(Deserialize)]
        struct T {
            a: LooseBool,
            b: LooseBool,
        }
        let t: T = serde_json::from_str(r#"{"a":"true","b":false}"#).unwrap();
        assert!(t.a.0 && !t.b.0);
        assert!(serde_json::from_str::<T>(r#"{"a":"yes","b":false}"#).is_err());
    }
}
