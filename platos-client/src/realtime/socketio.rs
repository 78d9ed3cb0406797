//! Socket.IO v5 packets, as carried inside Engine.IO `message` packets
//! (docs/realtime.md §1).
//!
//! A packet is: one digit for its type, the namespace followed by `,`
//! (omitted for `/`), an optional numeric ack id, then JSON. Binary packets
//! (types 5 and 6) carry attachments in separate frames; Platos never sends
//! them, so they are reported as unsupported rather than half-decoded. Pure
//! functions; no I/O.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::ProtocolError;

/// Ack ids longer than this many digits are not ids but garbage.
const MAX_ACK_DIGITS: usize = 18;

/// One decoded Socket.IO packet.
#[derive(Debug, PartialEq)]
pub(crate) enum Packet<'a> {
    /// `0`: the namespace connect ack (`{"sid"}`), or a connect request.
    Connect {
        namespace: &'a str,
        data: Option<Value>,
    },
    /// `1`: the namespace was left (by the server, when received).
    Disconnect { namespace: &'a str },
    /// `2`: an event `["name", args...]`.
    Event {
        namespace: &'a str,
        ack_id: Option<u64>,
        name: String,
        args: Vec<Value>,
    },
    /// `3`: an acknowledgement of an event we sent with an ack id.
    Ack {
        namespace: &'a str,
        ack_id: u64,
        args: Vec<Value>,
    },
    /// `4`: the server refused the namespace connect (`{"message"}`).
    ConnectError { namespace: &'a str, data: Value },
}

impl Packet<'_> {
    pub(crate) fn namespace(&self) -> &str {
        match self {
            Packet::Connect { namespace, .. }
            | Packet::Disconnect { namespace }
            | Packet::Event { namespace, .. }
            | Packet::Ack { namespace, .. }
            | Packet::ConnectError { namespace, .. } => namespace,
        }
    }
}

impl Packet<'_> {
    /// The message of a CONNECT_ERROR's data (an object with `message`, or
    /// a bare string from older servers).
    pub(crate) fn connect_error_message(data: &Value) -> String {
        match data {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("namespace connect refused")
                .to_owned(),
            _ => "namespace connect refused".to_owned(),
        }
    }
}

/// Decodes the payload of an Engine.IO `message` packet.
pub(crate) fn decode(packet: &str) -> Result<Packet<'_>, ProtocolError> {
    let bytes = packet.as_bytes();
    let Some(&kind) = bytes.first() else {
        return Err(ProtocolError::new("empty Socket.IO packet"));
    };
    match kind {
        b'0'..=b'4' => {}
        b'5' | b'6' => {
            return Err(ProtocolError::with_excerpt(
                "binary Socket.IO packets are not supported",
                packet,
            ));
        }
        _ => {
            return Err(ProtocolError::with_excerpt(
                "unknown Socket.IO packet type",
                packet,
            ));
        }
    }
    // The type is one ASCII digit, so index 1 is a char boundary.
    let mut rest = &packet[1..];

    let namespace = if rest.starts_with('/') {
        match rest.find(',') {
            Some(comma) => {
                let ns = &rest[..comma];
                rest = &rest[comma + 1..];
                ns
            }
            None => {
                let ns = rest;
                rest = "";
                ns
            }
        }
    } else {
        "/"
    };

    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack_id = if digits == 0 {
        None
    } else if digits > MAX_ACK_DIGITS {
        return Err(ProtocolError::with_excerpt(
            "Socket.IO ack id is too long",
            packet,
        ));
    } else {
        let id = rest[..digits]
            .parse::<u64>()
            .map_err(|_| ProtocolError::with_excerpt("bad Socket.IO ack id", packet))?;
        rest = &rest[digits..];
        Some(id)
    };

    let json = |what: &str| -> Result<Option<Value>, ProtocolError> {
        if rest.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(rest).map(Some).map_err(|e| {
            ProtocolError::with_excerpt(format!("bad JSON in Socket.IO {what}: {e}"), packet)
        })
    };

    match kind {
        b'0' => Ok(Packet::Connect {
            namespace,
            data: json("CONNECT")?,
        }),
        b'1' => Ok(Packet::Disconnect { namespace }),
        b'2' => {
            let args = json_array(rest, packet, "EVENT")?;
            let mut args = args.into_iter();
            let name = match args.next() {
                Some(Value::String(name)) => name,
                _ => {
                    return Err(ProtocolError::with_excerpt(
                        "Socket.IO EVENT without a name",
                        packet,
                    ));
                }
            };
            Ok(Packet::Event {
                namespace,
                ack_id,
                name,
                args: args.collect(),
            })
        }
        b'3' => {
            let ack_id = ack_id.ok_or_else(|| {
                ProtocolError::with_excerpt("Socket.IO ACK without an id", packet)
            })?;
            Ok(Packet::Ack {
                namespace,
                ack_id,
                args: json_array(rest, packet, "ACK")?,
            })
        }
        b'4' => Ok(Packet::ConnectError {
            namespace,
            data: json("CONNECT_ERROR")?.unwrap_or(Value::Null),
        }),
        _ => Err(ProtocolError::with_excerpt(
            "unknown Socket.IO packet type",
            packet,
        )),
    }
}

/// An EVENT seen without decoding its argument: what the hot path needs.
#[derive(Debug, PartialEq)]
pub(crate) struct PeekedEvent<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    /// The argument's JSON text, a slice of the packet (validated JSON).
    pub(crate) arg: &'a str,
}

/// The fast path for the common packet `2/ns,["name",{...}]`: checks the
/// JSON and finds the argument without building any value. `None` for
/// anything else (other types, ack ids, escaped names, other arities,
/// invalid JSON): [`decode`] then handles it, errors included.
pub(crate) fn peek_event(packet: &str) -> Option<PeekedEvent<'_>> {
    let rest = packet.strip_prefix('2')?;
    let (namespace, rest) = if rest.starts_with('/') {
        rest.split_once(',')?
    } else {
        ("/", rest)
    };
    if rest.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let (name, arg) = serde_json::from_str::<(&str, &RawValue)>(rest).ok()?;
    Some(PeekedEvent {
        namespace,
        name,
        arg: arg.get(),
    })
}

fn json_array(text: &str, packet: &str, what: &str) -> Result<Vec<Value>, ProtocolError> {
    serde_json::from_str::<Vec<Value>>(text).map_err(|e| {
        ProtocolError::with_excerpt(
            format!("Socket.IO {what} payload is not a JSON array: {e}"),
            packet,
        )
    })
}

/// `0/agent,{auth}`: asks to join `namespace`, authenticating with `auth`.
pub(crate) fn connect(namespace: &str, auth: &Value) -> String {
    let mut out = prefix('0', namespace);
    // Serialising a Value cannot fail.
    out.push_str(&auth.to_string());
    out
}

/// `1/agent,`: leaves `namespace`.
pub(crate) fn disconnect(namespace: &str) -> String {
    prefix('1', namespace)
}

/// `2/agent,["name",data]`: emits an event.
pub(crate) fn event<T: Serialize + ?Sized>(
    namespace: &str,
    name: &str,
    data: &T,
) -> Result<String, serde_json::Error> {
    let mut out = prefix('2', namespace);
    out.push_str(&serde_json::to_string(&(name, data))?);
    Ok(out)
}

fn prefix(kind: char, namespace: &str) -> String {
    let mut out = String::with_capacity(namespace.len() + 64);
    out.push(kind);
    if namespace != "/" {
        out.push_str(namespace);
        out.push(',');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_connect_ack_and_refusal() {
        assert_eq!(
            decode(r#"0/agent,{"sid":"s1"}"#).unwrap(),
            Packet::Connect {
                namespace: "/agent",
                data: Some(json!({"sid": "s1"}))
            }
        );
        assert_eq!(
            decode("0").unwrap(),
            Packet::Connect {
                namespace: "/",
                data: None
            }
        );
        let p = decode(r#"4/agent,{"message":"Invalid token"}"#).unwrap();
        let Packet::ConnectError { namespace, data } = &p else {
            panic!("{p:?}")
        };
        assert_eq!(*namespace, "/agent");
        assert_eq!(Packet::connect_error_message(data), "Invalid token");
        assert_eq!(
            Packet::connect_error_message(&json!("old style")),
            "old style"
        );
        assert_eq!(
            Packet::connect_error_message(&Value::Null),
            "namespace connect refused"
        );
    }

    #[test]
    fn decodes_events_with_and_without_namespace_and_ack() {
        assert_eq!(
            decode(r#"2/agent,["agent_event",{"type":"token","text":"hi"}]"#).unwrap(),
            Packet::Event {
                namespace: "/agent",
                ack_id: None,
                name: "agent_event".into(),
                args: vec![json!({"type":"token","text":"hi"})],
            }
        );
        assert_eq!(
            decode(r#"2["ping",1,2]"#).unwrap(),
            Packet::Event {
                namespace: "/",
                ack_id: None,
                name: "ping".into(),
                args: vec![json!(1), json!(2)],
            }
        );
        assert_eq!(
            decode(r#"2/agent/a1,12["x"]"#).unwrap(),
            Packet::Event {
                namespace: "/agent/a1",
                ack_id: Some(12),
                name: "x".into(),
                args: vec![],
            }
        );
        assert_eq!(
            decode(r#"3/agent,7[{"ok":true}]"#).unwrap(),
            Packet::Ack {
                namespace: "/agent",
                ack_id: 7,
                args: vec![json!({"ok": true})],
            }
        );
    }

    #[test]
    fn decodes_disconnect() {
        assert_eq!(
            decode("1/agent,").unwrap(),
            Packet::Disconnect {
                namespace: "/agent"
            }
        );
        assert_eq!(decode("1").unwrap(), Packet::Disconnect { namespace: "/" });
        // Namespace without the trailing comma.
        assert_eq!(
            decode("1/agent").unwrap(),
            Packet::Disconnect {
                namespace: "/agent"
            }
        );
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        for bad in [
            "",
            "9",
            "x",
            "2/agent,",
            "2/agent,{}",
            "2/agent,[]",
            "2/agent,[1]",
            r#"2/agent,["agent_event",{"type":"token""#,
            "2/agent,not json",
            r#"3/agent,["no id"]"#,
            r#"51-/agent,["bin",{"_placeholder":true,"num":0}]"#,
            "6",
            "2/agent,99999999999999999999999[\"x\"]",
            "0/agent,{oops",
            "é",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} decoded");
        }
    }

    #[test]
    fn encodes_outgoing_packets() {
        let auth = json!({"token": "t", "organizationId": "o"});
        let frame = connect("/agent", &auth);
        let json = frame.strip_prefix("0/agent,").unwrap();
        assert_eq!(serde_json::from_str::<Value>(json).unwrap(), auth);
        assert_eq!(connect("/", &json!({})), "0{}");
        assert_eq!(disconnect("/agent"), "1/agent,");
        assert_eq!(disconnect("/"), "1");
        assert_eq!(
            event("/agent", "stop", &json!({"threadId": "th"})).unwrap(),
            r#"2/agent,["stop",{"threadId":"th"}]"#
        );
        assert_eq!(event("/", "x", &json!(null)).unwrap(), r#"2["x",null]"#);
    }

    #[test]
    fn peeks_at_plain_events_without_decoding() {
        let frame = r#"2/agent,["agent_event",{"type":"token","text":"a \"b\""}]"#;
        let p = peek_event(frame).unwrap();
        assert_eq!(p.namespace, "/agent");
        assert_eq!(p.name, "agent_event");
        assert_eq!(p.arg, r#"{"type":"token","text":"a \"b\""}"#);
        // The argument is a slice of the frame, not a copy.
        let offset = p.arg.as_ptr() as usize - frame.as_ptr() as usize;
        assert_eq!(&frame[offset..offset + p.arg.len()], p.arg);

        assert_eq!(peek_event(r#"2["x",1]"#).unwrap().namespace, "/");
        for other in [
            r#"2/agent,["agent_event",{"type":"token""#,
            r#"2/agent,["agent_event"]"#,
            r#"2/agent,["agent_event",{},{}]"#,
            r#"2/agent,3["agent_event",{}]"#,
            r#"2/agent,["agent\u005fevent",{}]"#,
            r#"0/agent,{"sid":"x"}"#,
            "2/agent",
            "",
        ] {
            assert_eq!(peek_event(other), None, "{other}");
        }
    }

    #[test]
    fn round_trips_through_decode() {
        let frame = event(
            "/agent",
            "message",
            &json!({"message": "a,b/c", "threadId": "t"}),
        )
        .unwrap();
        let p = decode(&frame).unwrap();
        assert_eq!(p.namespace(), "/agent");
        let Packet::Event { name, args, .. } = p else {
            panic!()
        };
        assert_eq!(name, "message");
        assert_eq!(args, vec![json!({"message": "a,b/c", "threadId": "t"})]);
    }
}
