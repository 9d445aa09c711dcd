//! Incremental Server-Sent Events parsing: bytes in as they arrive, whole events out, so a
//! streamed upstream answer can be passed to the client event by event.
//!
//! The parser is linear in its input: each byte is scanned for a line end once (only the bytes a
//! chunk adds are searched; the buffer keeps nothing but the current partial line), and an event
//! is bounded as a whole — its `data:` lines together plus the partial line — so an upstream that
//! sends one endless event, in one line or in a million, is cut at the limit instead of filling
//! the node's memory.

/// One event. `data` joins the event's `data:` lines with `\n`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
    pub retry: Option<u64>,
}

impl SseEvent {
    /// The event in wire form (terminated by a blank line).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.data.len() + 32);
        if let Some(id) = &self.id {
            out.push_str(&format!("id: {id}\n"));
        }
        if let Some(event) = &self.event {
            out.push_str(&format!("event: {event}\n"));
        }
        if let Some(retry) = self.retry {
            out.push_str(&format!("retry: {retry}\n"));
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out
    }
}

/// Default bound on one event (all its lines together).
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// An event grew past the parser's bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTooLarge {
    pub limit: usize,
}

/// Feed bytes with [`SseParser::push`]; it returns the events completed so far.
#[derive(Debug)]
pub struct SseParser {
    /// The current line, not yet terminated (never holds a `\n`).
    buf: Vec<u8>,
    current: SseEvent,
    has_field: bool,
    data_lines: usize,
    /// Bytes of the current event's completed lines.
    event_bytes: usize,
    max_event: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    pub fn new() -> Self {
        SseParser::with_limit(MAX_EVENT_BYTES)
    }

    /// A parser refusing events larger than `max_event` bytes.
    pub fn with_limit(max_event: usize) -> Self {
        SseParser {
            buf: Vec::new(),
            current: SseEvent::default(),
            has_field: false,
            data_lines: 0,
            event_bytes: 0,
            max_event,
        }
    }

    /// Adds `chunk`; returns every event it completed. Errors as soon as the current event (its
    /// completed lines plus the partial one) grows past the limit.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        let mut events = Vec::new();
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            rest = &tail[1..];
            if self.buf.is_empty() {
                self.line(head, &mut events)?;
            } else {
                let mut line = std::mem::take(&mut self.buf);
                line.extend_from_slice(head);
                self.line(&line, &mut events)?;
                line.clear();
                self.buf = line;
            }
        }
        self.buf.extend_from_slice(rest);
        if self.event_bytes + self.buf.len() > self.max_event {
            return Err(EventTooLarge { limit: self.max_event });
        }
        Ok(events)
    }

    /// One complete line (without its `\n`).
    fn line(&mut self, raw: &[u8], events: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            if self.has_field {
                events.push(std::mem::take(&mut self.current));
                self.has_field = false;
                self.data_lines = 0;
            }
            self.event_bytes = 0;
            return Ok(());
        }
        if raw[0] == b':' {
            return Ok(()); // comment / keep-alive
        }
        self.event_bytes += raw.len() + 1;
        if self.event_bytes > self.max_event {
            return Err(EventTooLarge { limit: self.max_event });
        }
        let line = String::from_utf8_lossy(raw);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        self.has_field = true;
        match field {
            "data" => {
                if self.data_lines > 0 {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.data_lines += 1;
            }
            "event" => self.current.event = Some(value.to_owned()),
            "id" => self.current.id = Some(value.to_owned()),
            "retry" => self.current.retry = value.parse().ok(),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks() {
        let mut p = SseParser::new();
        assert_eq!(p.push(b"event: message\nda").expect("ok"), vec![]);
        let got = p
            .push(b"ta: {\"a\":1}\n\n: keepalive\n\nid: 7\r\ndata: x\r\ndata: y\r\n\r\n")
            .expect("ok");
        assert_eq!(
            got,
            vec![
                SseEvent {
                    event: Some("message".into()),
                    data: "{\"a\":1}".into(),
                    id: None,
                    retry: None
                },
                SseEvent {
                    event: None,
                    data: "x\ny".into(),
                    id: Some("7".into()),
                    retry: None
                },
            ]
        );
    }

    #[test]
    fn encode_round_trips() {
        let e = SseEvent {
            event: Some("message".into()),
            data: "a\nb".into(),
            id: Some("1".into()),
            retry: Some(5),
        };
        let mut p = SseParser::new();
        assert_eq!(p.push(e.encode().as_bytes()).expect("ok"), vec![e]);
    }

    #[test]
    fn an_event_is_bounded_as_a_whole_not_per_line() {
        // Many short data lines: each is small, the event is not.
        let mut p = SseParser::with_limit(4096);
        let line = format!("data: {}\n", "x".repeat(100));
        let mut failed = None;
        for i in 0..100 {
            if let Err(e) = p.push(line.as_bytes()) {
                failed = Some((i, e));
                break;
            }
        }
        let (at, e) = failed.expect("the event must be refused");
        assert_eq!(e, EventTooLarge { limit: 4096 });
        assert!(at * 107 <= 4096 + 107, "refused late, after {at} lines");
        // One endless line.
        let mut p = SseParser::with_limit(4096);
        assert!(p.push(b"data: ").is_ok());
        assert_eq!(p.push(&[b'y'; 5000]), Err(EventTooLarge { limit: 4096 }));
    }

    #[test]
    fn events_under_the_limit_pass_one_after_another() {
        // Three events of 3 KiB each under a 4 KiB limit: the bound is per event, not per stream.
        let mut p = SseParser::with_limit(4096);
        let one = format!("data: {}\n\n", "z".repeat(3000));
        let mut got = Vec::new();
        for b in one.repeat(3).as_bytes().chunks(7) {
            got.extend(p.push(b).expect("each event fits"));
        }
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|e| e.data.len() == 3000));
    }

    #[test]
    fn byte_at_a_time_input_gives_the_same_events() {
        let wire = "event: a\r\ndata: 1\r\n\r\n: c\n\ndata: 2\ndata: 3\n\n";
        let mut whole = SseParser::new();
        let expected = whole.push(wire.as_bytes()).expect("ok");
        let mut p = SseParser::new();
        let mut got = Vec::new();
        for b in wire.as_bytes() {
            got.extend(p.push(std::slice::from_ref(b)).expect("ok"));
        }
        assert_eq!(got, expected);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].data, "2\n3");
    }
}
