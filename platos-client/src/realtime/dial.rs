//! Dialing and the handshake (docs/realtime.md §1–§2): the WebSocket upgrade
//! with the credential headers, the Engine.IO open packet, the namespace
//! connect with the auth payload, and the acknowledgement; plus what a
//! WebSocket failure means. Pings are answered all along.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::Context;
use super::classify::{self, Fault, Signal};
use super::engineio::{self, Handshake};
use super::socketio;
use crate::config::Secret;
use crate::error::Error;

/// A WebSocket over the connection the SDK opened (crate::net: TCP, a
/// proxy tunnel, TLS).
pub(crate) type Socket = WebSocketStream<crate::net::NetStream>;

/// The largest WebSocket message accepted from the server. Not the open
/// packet's `maxPayload`: that is what the server accepts from us, and a
/// server legitimately sends more (a large artifact's `finalContent`).
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// The read buffer of a connection. Gateway frames are a few hundred bytes;
/// tungstenite's default (128 KiB, allocated up front) would be most of what
/// a connection costs. Larger messages still arrive whole: the buffer is
/// where reads land, not a limit.
pub(crate) const READ_BUFFER_BYTES: usize = 8 << 10;
/// Frames we send are small and rare (`message`, `stop`, pongs): written at
/// once rather than gathered in a 128 KiB write buffer.
const WRITE_BUFFER_BYTES: usize = 0;

/// A connected, namespace-acknowledged socket.
pub(crate) struct Conn {
    pub(crate) ws: Socket,
    pub(crate) handshake: Handshake,
    pub(crate) opened_at: Instant,
}

/// Opens the WebSocket of `client` and joins `namespace` with `token`,
/// within the client's timeout.
pub(crate) async fn dial(
    client: &Context,
    namespace: &str,
    token: Option<&Secret>,
) -> Result<Conn, Fault> {
    let shared = client.shared();
    let url = engineio::socket_url(&shared.base_url)
        .map_err(|e| Fault::Failed(Error::config(e.to_string())))?;
    let mut request = url
        .into_client_request()
        .map_err(|e| Fault::Failed(Error::config(format!("realtime URL: {e}"))))?;
    let headers = request.headers_mut();
    if let Ok(ua) = HeaderValue::from_str(&shared.user_agent) {
        headers.insert("user-agent", ua);
    }
    for (name, value) in client.auth_headers(token) {
        match HeaderValue::from_str(&value) {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            Err(_) => tracing::warn!(header = name, "header value is not valid HTTP; not sent"),
        }
    }
    let limit = shared.timeout;
    match tokio::time::timeout(
        limit,
        open(request, &shared.net, namespace, auth_payload(client, token)),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(Fault::Lost(format!("no connect ack within {limit:?}"))),
    }
}

/// The CONNECT auth payload (docs/realtime.md §1–§2): the token, and the scope
/// for gateways that read it from there.
fn auth_payload(client: &Context, token: Option<&Secret>) -> Value {
    let mut auth = Map::new();
    if let Some(token) = token {
        auth.insert("token".into(), Value::from(token.expose()));
    }
    if let Some(scope) = &client.scope {
        auth.insert(
            "organizationId".into(),
            Value::from(scope.organization_id.as_str()),
        );
        auth.insert("projectId".into(), Value::from(scope.project_id.as_str()));
        auth.insert(
            "environmentId".into(),
            Value::from(scope.environment_id.as_str()),
        );
        if let Some(user) = &scope.user_id {
            auth.insert("userId".into(), Value::from(user.as_str()));
        }
    }
    Value::Object(auth)
}

/// Dials, reads the open packet, joins `namespace` with `auth` and waits
/// for the acknowledgement, answering pings all along.
async fn open(
    request: tungstenite::handshake::client::Request,
    net: &crate::net::Net,
    namespace: &str,
    auth: Value,
) -> Result<Conn, Fault> {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let uri = request.uri();
    let tls = uri.scheme_str() == Some("wss");
    let host = uri
        .host()
        .ok_or_else(|| Fault::Failed(Error::config("the realtime URL has no host")))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let stream = net.connect(&host, port, tls).await.map_err(|(e, retry)| {
        if retry {
            Fault::Lost(e.message().to_owned())
        } else {
            Fault::Failed(e)
        }
    })?;
    let (mut ws, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(upgrade_error)?;

    let handshake = loop {
        let text = next_text(&mut ws).await?;
        match engineio::decode(&text).map_err(|e| Fault::Failed(e.into()))? {
            engineio::Packet::Open(handshake) => break handshake,
            engineio::Packet::Noop => {}
            _ => {
                return Err(Fault::Failed(Error::stream_of(
                    crate::error::StreamCode::ProtocolError,
                    "the server did not start with an Engine.IO open packet",
                )));
            }
        }
    };
    let opened_at = Instant::now();
    tracing::debug!(sid = %handshake.sid, "engine.io session open");
    send_text(
        &mut ws,
        engineio::message(&socketio::connect(namespace, &auth)),
    )
    .await?;

    loop {
        let text = next_text(&mut ws).await?;
        let packet = match engineio::decode(&text).map_err(|e| Fault::Failed(e.into()))? {
            engineio::Packet::Ping(payload) => {
                send_text(&mut ws, engineio::pong(payload)).await?;
                continue;
            }
            engineio::Packet::Close => {
                return Err(Fault::Lost(
                    "the server closed the session before the connect ack".into(),
                ));
            }
            engineio::Packet::Message(packet) => packet,
            _ => continue,
        };
        match socketio::decode(packet).map_err(|e| Fault::Failed(e.into()))? {
            p if p.namespace() != namespace => {}
            socketio::Packet::Connect { .. } => {
                return Ok(Conn {
                    ws,
                    handshake,
                    opened_at,
                });
            }
            socketio::Packet::ConnectError { data, .. } => {
                return Err(classify::connect_refused(&data));
            }
            socketio::Packet::Disconnect { .. } => {
                return Err(Fault::Lost(
                    "the server left the namespace before the connect ack".into(),
                ));
            }
            socketio::Packet::Event { name, args, .. } => {
                let data = args.into_iter().next().unwrap_or(Value::Null);
                if let Signal::TokenRefused { code, message, raw } = classify::classify(&name, data)
                {
                    return Err(Fault::AuthRefused { code, message, raw });
                }
            }
            socketio::Packet::Ack { .. } => {}
        }
    }
}

/// The next text message, skipping WebSocket control frames.
async fn next_text(ws: &mut Socket) -> Result<Utf8Bytes, Fault> {
    loop {
        match ws.next().await {
            None => return Err(Fault::Lost("the server closed the connection".into())),
            Some(Err(e)) => return Err(classify_ws_error(e)),
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Binary(_))) => return Err(binary_frame()),
            Some(Ok(Message::Close(_))) => {
                return Err(Fault::Lost("the server closed the WebSocket".into()));
            }
            Some(Ok(_)) => {}
        }
    }
}

pub(crate) fn binary_frame() -> Fault {
    Fault::Failed(Error::stream_of(
        crate::error::StreamCode::ProtocolError,
        "binary WebSocket frames are not supported",
    ))
}

pub(crate) async fn send_text(ws: &mut Socket, frame: String) -> Result<(), Fault> {
    ws.send(Message::text(frame))
        .await
        .map_err(|e| Fault::Lost(format!("sending failed: {e}")))
}

/// Closes cleanly: leave `namespace`, then the WebSocket close handshake,
/// bounded by `grace`.
pub(crate) async fn close(mut ws: Socket, namespace: &str, grace: Duration) {
    let _ = tokio::time::timeout(grace, async {
        let _ = send_text(&mut ws, engineio::message(&socketio::disconnect(namespace))).await;
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// A failed WebSocket upgrade.
fn upgrade_error(e: tungstenite::Error) -> Fault {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let message = format!("the WebSocket upgrade was refused with HTTP {status}");
            // The gateway refuses with Engine.IO JSON, a bare status, or a
            // socket event after the upgrade; an HTML page answering the
            // upgrade is an intermediary's (a proxy that will not tunnel):
            // retrying cannot get through it, the HTTP lane can.
            let html = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| {
                    ct.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("text/html")
                });
            if html {
                return Fault::Failed(Error::stream_of(
                    crate::error::StreamCode::UpgradeBlocked,
                    format!("{message} by something that is not the Platos gateway"),
                ));
            }
            match status {
                401 | 403 => Fault::AuthRefused {
                    code: None,
                    message,
                    raw: body,
                },
                429 | 500.. => Fault::Lost(message),
                _ => Fault::Failed(Error::stream_of(
                    crate::error::StreamCode::UpgradeRefused,
                    message,
                )),
            }
        }
        tungstenite::Error::Url(e) => Fault::Failed(Error::config(format!("realtime URL: {e}"))),
        tungstenite::Error::HttpFormat(e) => {
            Fault::Failed(Error::config(format!("realtime upgrade request: {e}")))
        }
        other => Fault::Lost(format!("connecting failed: {other}")),
    }
}

/// A read error on an established WebSocket.
pub(crate) fn classify_ws_error(e: tungstenite::Error) -> Fault {
    use tungstenite::error::ProtocolError as Ws;
    match e {
        tungstenite::Error::Capacity(e) => Fault::Failed(Error::stream_of(
            crate::error::StreamCode::PayloadTooLarge,
            format!("the server sent a message over the {MAX_MESSAGE_BYTES}-byte limit: {e}"),
        )),
        tungstenite::Error::Utf8(e) => Fault::Failed(Error::stream_of(
            crate::error::StreamCode::ProtocolError,
            format!("the server sent a text frame that is not UTF-8: {e}"),
        )),
        tungstenite::Error::Protocol(Ws::ResetWithoutClosingHandshake) => {
            Fault::Lost("the connection was reset".into())
        }
        tungstenite::Error::Protocol(e) => Fault::Failed(Error::stream_of(
            crate::error::StreamCode::ProtocolError,
            format!("WebSocket protocol violation: {e}"),
        )),
        other => Fault::Lost(format!("connection error: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_errors() {
        assert!(matches!(
            classify_ws_error(tungstenite::Error::ConnectionClosed),
            Fault::Lost(_)
        ));
        assert!(matches!(
            classify_ws_error(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
            )),
            Fault::Lost(_)
        ));
        match classify_ws_error(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong {
                size: 2,
                max_size: 1,
            },
        )) {
            Fault::Failed(e) => assert_eq!(e.code(), Some("payload_too_large")),
            _ => panic!(),
        }
    }
}
