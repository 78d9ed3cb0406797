//! The SDK's one parser of `text/event-stream` bodies (the WHATWG HTML
//! "event stream interpretation"), shared by every lane that reads server-sent
//! events. It knows nothing of what the events mean: the V1 stream reader
//! ([`crate::v1`]) and the agent-service turn lane give them meaning.
//!
//! Written here rather than taken from a crate: the maintained parsers
//! (`eventsource-stream`, `sse-stream`, `eventsource-client`) either buffer a
//! line or an event without a bound, hide comments (which the V1 reader needs
//! to count heartbeats as activity), or bring their own HTTP client. The rules
//! fit in one screen, so owning them costs less than working around those.
//!
//! Rules (docs/v1-stream.md, "Event-stream parsing"):
//! - lines end in CR, LF or CRLF; a CR that ends a chunk may be the first half
//!   of a CRLF split across chunks, so the LF opening the next chunk is skipped;
//! - one leading byte-order mark is dropped;
//! - lines starting with `:` are comments, surfaced as [`Item::Comment`];
//! - `field: value` with one optional space after the colon removed;
//! - `data` lines join with `\n`; `event` names the event (default `message`);
//!   `id` sets the last-event-id buffer, which persists across events, unless
//!   the value contains U+0000; `retry` is read only when it is all ASCII digits;
//! - a blank line dispatches the event; an event with no data is not dispatched;
//! - bytes are split into lines before they are decoded, so a UTF-8 character
//!   split across chunks is whole by the time its line is decoded (CR and LF
//!   never occur inside a multi-byte character); invalid UTF-8 becomes U+FFFD;
//! - at the end of the body an unterminated event is discarded (the caller
//!   simply stops feeding);
//! - a line longer than [`Limits::max_line`] or an event whose data exceeds
//!   [`Limits::max_event`] is a [`TooLarge`] error: memory stays bounded
//!   whatever the server sends.

use std::time::Duration;

/// Size caps that keep a misbehaving server from growing our buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Longest line, in bytes, without its terminator.
    pub(crate) max_line: usize,
    /// Most data one event may accumulate, in bytes.
    pub(crate) max_event: usize,
}

impl Limits {
    /// The same cap for a line and for an event's data.
    pub(crate) fn bytes(max: usize) -> Self {
        Limits {
            max_line: max,
            max_event: max,
        }
    }
}

/// What the parser found in the bytes fed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A dispatched event.
    Event(Event),
    /// A `:` line (e.g. a `: keep-alive` heartbeat), without the colon and
    /// one following space.
    Comment(String),
    /// A valid `retry:` field: the server's reconnection delay.
    Retry(Duration),
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `event` field, `message` when none was given.
    pub(crate) event: String,
    /// The `data` lines joined with `\n`.
    pub(crate) data: String,
    /// The last-event-id buffer when the event was dispatched (empty: none).
    pub(crate) id: String,
}

/// A line or event went over its cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TooLarge {
    /// `"line"` or `"event"`.
    pub(crate) what: &'static str,
    /// The cap that was exceeded, in bytes.
    pub(crate) limit: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "an event-stream {} exceeded {} bytes",
            self.what, self.limit
        )
    }
}

/// An incremental event-stream parser: feed it chunks as they arrive.
#[derive(Debug)]
pub(crate) struct Parser {
    limits: Limits,
    /// The current, unterminated line.
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF opening the next one is its pair.
    after_cr: bool,
    /// No line has been completed yet (a BOM may lead it).
    first_line: bool,
    event: String,
    data: String,
    id: String,
}

impl Parser {
    pub(crate) fn new(limits: Limits) -> Self {
        Parser {
            limits,
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            event: String::new(),
            data: String::new(),
            id: String::new(),
        }
    }

    /// Parses `chunk`, appending what it completes to `out`. After an error
    /// the parser must not be fed again.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<Item>) -> Result<(), TooLarge> {
        if chunk.is_empty() {
            return Ok(());
        }
        if std::mem::take(&mut self.after_cr) && chunk[0] == b'\n' {
            chunk = &chunk[1..];
        }
        while let Some(end) = chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.push(&chunk[..end])?;
            let cr = chunk[end] == b'\r';
            chunk = &chunk[end + 1..];
            if cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            self.end_line(out)?;
        }
        self.push(chunk)
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), TooLarge> {
        if self.line.len() + bytes.len() > self.limits.max_line {
            return Err(TooLarge {
                what: "line",
                limit: self.limits.max_line,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<Item>) -> Result<(), TooLarge> {
        let mut bytes = &self.line[..];
        if std::mem::take(&mut self.first_line) {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let line = String::from_utf8_lossy(bytes).into_owned();
        self.line.clear();

        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix(':') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            out.push(Item::Comment(comment.to_owned()));
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() + 1 > self.limits.max_event {
                    return Err(TooLarge {
                        what: "event",
                        limit: self.limits.max_event,
                    });
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.id),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // More digits than a u64 holds is not a delay anyone meant.
                if let Ok(ms) = value.parse::<u64>() {
                    out.push(Item::Retry(Duration::from_millis(ms)));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Item>) {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        out.push(Item::Event(Event {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            id: self.id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<Item> {
        let mut parser = Parser::new(Limits::bytes(1024));
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).expect("within limits");
        }
        out
    }

    fn parse(text: &str) -> Vec<Item> {
        parse_chunks(&[text.as_bytes()])
    }

    /// Every way of cutting `bytes` in two gives the same items as one chunk.
    fn split_everywhere(bytes: &[u8]) -> Vec<Item> {
        let whole = parse_chunks(&[bytes]);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(parse_chunks(&[a, b]), whole, "split at byte {at}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_chunks(&singles), whole, "one byte at a time");
        whole
    }

    fn event(event: &str, data: &str, id: &str) -> Item {
        Item::Event(Event {
            event: event.to_owned(),
            data: data.to_owned(),
            id: id.to_owned(),
        })
    }

    #[test]
    fn line_ends_lf_cr_crlf() {
        let expected = vec![event("message", "a", ""), event("message", "b", "")];
        assert_eq!(parse("data: a\n\ndata: b\n\n"), expected);
        assert_eq!(parse("data: a\r\rdata: b\r\r"), expected);
        assert_eq!(parse("data: a\r\n\r\ndata: b\r\n\r\n"), expected);
        assert_eq!(parse("data: a\r\n\ndata: b\r\r\n"), expected);
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        // If the LF after a chunk-final CR counted as a second line end, the
        // first event would be dispatched with the second one's data missing.
        let items = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(items, vec![event("message", "a\nb", "")]);
        split_everywhere(b"id: 7\r\ndata: x\r\n\r\ndata: y\r\n\r\n");
    }

    #[test]
    fn bare_cr_at_chunk_end_followed_by_other_text() {
        let items = parse_chunks(&[b"data: a\r", b"data: b\r", b"\r"]);
        assert_eq!(items, vec![event("message", "a\nb", "")]);
    }

    #[test]
    fn leading_bom_is_dropped_once() {
        let bom = "\u{FEFF}";
        assert_eq!(
            parse(&format!("{bom}data: a\n\n")),
            vec![event("message", "a", "")]
        );
        // Split inside the BOM.
        assert_eq!(
            parse_chunks(&[b"\xEF", b"\xBB\xBFdata: a\n\n"]),
            vec![event("message", "a", "")]
        );
        // A second BOM is data, not a mark: the field name no longer is `data`.
        assert_eq!(parse(&format!("{bom}{bom}data: a\n\n")), vec![]);
    }

    #[test]
    fn comments_are_surfaced() {
        assert_eq!(
            parse(": keep-alive\n\n:raw\ndata: a\n\n"),
            vec![
                Item::Comment("keep-alive".into()),
                Item::Comment("raw".into()),
                event("message", "a", "")
            ]
        );
    }

    #[test]
    fn multi_line_data_and_field_forms() {
        assert_eq!(
            parse("data: one\ndata:two\ndata\ndata:  three\n\n"),
            vec![event("message", "one\ntwo\n\n three", "")]
        );
        // Unknown fields are ignored; a field without a colon has an empty value.
        assert_eq!(
            parse("foo: bar\ndata: a\n\n"),
            vec![event("message", "a", "")]
        );
        // `data:` with an empty value still makes an event with empty data.
        assert_eq!(parse("data:\n\n"), vec![event("message", "", "")]);
    }

    #[test]
    fn event_name_applies_to_one_event() {
        assert_eq!(
            parse("event: stream_meta\ndata: {}\n\ndata: x\n\n"),
            vec![event("stream_meta", "{}", ""), event("message", "x", "")]
        );
    }

    #[test]
    fn dataless_event_is_not_dispatched_and_resets_the_name() {
        assert_eq!(
            parse("event: stream_meta\nid: 1\n\ndata: x\n\n"),
            vec![event("message", "x", "1")]
        );
    }

    #[test]
    fn id_persists_and_nul_ids_are_ignored() {
        assert_eq!(
            parse("id: c1\ndata: a\n\ndata: b\n\nid: c\0x\ndata: c\n\nid\ndata: d\n\n"),
            vec![
                event("message", "a", "c1"),
                event("message", "b", "c1"),
                event("message", "c", "c1"),
                event("message", "d", ""),
            ]
        );
    }

    #[test]
    fn retry_only_when_all_digits() {
        assert_eq!(
            parse("retry: 1500\nretry: soon\nretry: 15s\nretry:\nretry: 99999999999999999999999\n"),
            vec![Item::Retry(Duration::from_millis(1500))]
        );
    }

    #[test]
    fn utf8_character_split_across_chunks() {
        let bytes = "data: wö€😀\n\n".as_bytes();
        assert_eq!(split_everywhere(bytes), vec![event("message", "wö€😀", "")]);
        // Invalid bytes become U+FFFD rather than an error.
        assert_eq!(
            parse_chunks(&[b"data: \xFF\n\n"]),
            vec![event("message", "\u{FFFD}", "")]
        );
    }

    #[test]
    fn torn_final_event_is_not_dispatched() {
        // The body ends inside the second event's data line, then without
        // the blank line: neither is an event.
        assert_eq!(
            parse("data: a\n\ndata: {\"seq\":4,\"ts\":"),
            vec![event("message", "a", "")]
        );
        assert_eq!(
            parse("data: a\n\ndata: b\n"),
            vec![event("message", "a", "")]
        );
    }

    #[test]
    fn oversized_line_is_an_error_not_a_buffer() {
        let mut parser = Parser::new(Limits::bytes(16));
        let mut out = Vec::new();
        assert!(parser.feed(b"data: 0123456789", &mut out).is_ok());
        let err = parser.feed(b"x", &mut out).unwrap_err();
        assert_eq!(
            err,
            TooLarge {
                what: "line",
                limit: 16
            }
        );
        assert_eq!(err.to_string(), "an event-stream line exceeded 16 bytes");
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut parser = Parser::new(Limits {
            max_line: 64,
            max_event: 10,
        });
        let mut out = Vec::new();
        parser.feed(b"data: 12345\n", &mut out).expect("6 bytes");
        let err = parser.feed(b"data: 1234\n", &mut out).unwrap_err();
        assert_eq!(err.what, "event");
        assert!(out.is_empty());
    }

    #[test]
    fn the_v1_wire_parses_under_every_split() {
        let wire = concat!(
            "event: stream_meta\ndata: {\"sv\":1,\"replayFrom\":null}\n\n",
            "id: 1.32.env_fixture_alpha/turn-fixture-71\n",
            "data: {\"sv\":1,\"t\":\"assistant.delta\",\"seq\":1,\"ts\":1,\"text\":\"wö\"}\n\n",
            ": keep-alive\n\n",
            "data: {\"sv\":1,\"t\":\"stream.error\",\"seq\":2,\"ts\":2}\n\n",
        );
        let items = split_everywhere(wire.as_bytes());
        assert_eq!(items.len(), 4);
        assert_eq!(
            items[0],
            event("stream_meta", r#"{"sv":1,"replayFrom":null}"#, "")
        );
        assert_eq!(items[2], Item::Comment("keep-alive".into()));
        let cursor = "1.32.env_fixture_alpha/turn-fixture-71";
        assert!(matches!(&items[1], Item::Event(e) if e.id == cursor && e.data.contains("wö")));
        // The transport-minted terminal has no `id:`; the buffer persists.
        assert!(matches!(&items[3], Item::Event(e) if e.id == cursor));
    }
}
