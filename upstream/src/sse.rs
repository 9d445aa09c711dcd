//! Incremental Server-Sent Events parsing: bytes in as they arrive, whole events out, so a
//! streamed upstream answer can be passed to the client event by event.

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
        let mut out = String::new();
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

/// Longest buffered incomplete event; a peer sending more without a blank line is broken.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Feed bytes with [`SseParser::push`]; it returns the events completed so far.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    current: SseEvent,
    has_field: bool,
    data_lines: usize,
}

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Adds `chunk`; returns every event it completed. Errors when an event grows past
    /// [`MAX_EVENT_BYTES`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if self.has_field {
                    events.push(std::mem::take(&mut self.current));
                    self.has_field = false;
                    self.data_lines = 0;
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // comment / keep-alive
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (line.clone(), String::new()),
            };
            self.has_field = true;
            match field.as_str() {
                "data" => {
                    if self.data_lines > 0 {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(&value);
                    self.data_lines += 1;
                }
                "event" => self.current.event = Some(value),
                "id" => self.current.id = Some(value),
                "retry" => self.current.retry = value.parse().ok(),
                _ => {}
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(format!("SSE event larger than {MAX_EVENT_BYTES} bytes"));
        }
        Ok(events)
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
}
