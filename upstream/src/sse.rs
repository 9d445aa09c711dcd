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

/// A bounded, seeded fuzz harness (issue 16: no panic reachable from input). Stable Rust only:
/// a fixed number of cases from a fixed seed, so a failure reproduces; `POOLGATE_FUZZ_CASES`
/// (a count, or `x<factor>`) and `POOLGATE_FUZZ_SEED` change them.
#[cfg(test)]
mod fuzz {
    use super::*;

    /// The corpus: small, valid (or nearly) SSE streams the mutations start from.
    const SEEDS: &[&str] = &[
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
        "id: 7\r\ndata: x\r\ndata: y\r\n\r\n",
        ": keepalive\n\ndata: 2\ndata: 3\n\n",
        "retry: 1000\nevent: ping\ndata:\n\n",
        "data:no-space\ndata:  two spaces\n\n",
        "event\ndata\nid\n\n",
        "data: \u{e9} \u{fc} \u{1d11e}\n\n",
        "retry: 18446744073709551616\ndata: huge retry\n\n",
        ":\n:\ndata: a:b:c\n\n\n\n",
        "data: unterminated",
    ];
    const DEFAULT_CASES: usize = 20_000;
    const DEFAULT_SEED: u64 = 0x5EE_F022;

    /// xorshift64*: a few lines, deterministic from its seed.
    struct Rng(u64);

    impl Rng {
        /// Seeded through splitmix64, so neighbouring seeds give unrelated streams.
        fn new(seed: u64) -> Rng {
            let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            Rng((z ^ (z >> 31)) | 1)
        }
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in `0..n` (0 when `n` is 0).
        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }
        fn one_in(&mut self, n: usize) -> bool {
            self.below(n) == 0
        }
        fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
            &from[self.below(from.len())]
        }
        fn piece<'a>(&mut self, from: &[&'a [u8]]) -> &'a [u8] {
            from[self.below(from.len())]
        }
    }

    fn env_cases(default: usize) -> usize {
        match std::env::var("POOLGATE_FUZZ_CASES") {
            Ok(v) => match v.strip_prefix('x') {
                Some(f) => (default as f64 * f.parse::<f64>().unwrap_or(1.0)) as usize,
                None => v.parse().unwrap_or(default),
            },
            Err(_) => default,
        }
    }

    fn env_seed(default: u64) -> u64 {
        std::env::var("POOLGATE_FUZZ_SEED")
            .ok()
            .and_then(|v| match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => v.parse().ok(),
            })
            .unwrap_or(default)
    }

    /// Bytes that stress a line-oriented parser: line ends, the field separator, invalid or
    /// multi-byte UTF-8, control characters.
    const INTERESTING: &[&[u8]] = &[
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b":",
        b": ",
        b"\0",
        b"\x7f",
        b"\xff",
        b"\xc3",
        b"\xe2\x80",
        "\u{feff}".as_bytes(),
        "\u{202e}".as_bytes(),
        "\u{1d11e}".as_bytes(),
        b"data:",
        b"data: ",
        b"event: ",
        b"id: ",
        b"retry: ",
        b"retry: -1",
        b"retry: 99999999999999999999999",
    ];

    fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.truncate(rng.below(len + 1)),
            2 => {
                // Splice: a prefix of this one, a suffix of another seed.
                let other = rng.pick(SEEDS).as_bytes();
                input.truncate(rng.below(len + 1));
                input.extend_from_slice(&other[rng.below(other.len() + 1)..]);
            }
            3 if len > 0 => {
                let (a, b) = range(rng, len);
                let copy = input[a..b].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, copy);
            }
            4 if len > 0 => {
                let (a, b) = range(rng, len);
                input.drain(a..b);
            }
            5 | 6 => {
                let at = rng.below(len + 1);
                let what = rng.pick(INTERESTING).to_vec();
                input.splice(at..at, what);
            }
            7 if len > 0 => {
                // A long run: grows lines and events towards the limit.
                let (a, b) = range(rng, len.min(16));
                let run = input[a..b].repeat(1 + rng.below(64));
                let at = rng.below(len + 1);
                input.splice(at..at, run);
            }
            _ => {
                let at = rng.below(len + 1);
                input.insert(at, rng.next() as u8);
            }
        }
    }

    fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
        let a = rng.below(len);
        let b = a + 1 + rng.below(len - a);
        (a, b)
    }

    /// Random lines of random fields with random values.
    fn generate(rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..rng.below(12) {
            match rng.below(6) {
                0 => out.extend_from_slice(b"\n"),
                1 => out.extend_from_slice(b":"),
                _ => out.extend_from_slice(rng.piece(&[&b"data"[..], b"event", b"id", b"retry", b"x", b""])),
            }
            if !rng.one_in(4) {
                out.extend_from_slice(rng.piece(&[&b":"[..], b": ", b":  "]));
            }
            for _ in 0..rng.below(20) {
                if rng.one_in(4) {
                    out.extend_from_slice(rng.piece(INTERESTING));
                } else {
                    out.push(rng.below(128) as u8);
                }
            }
            out.extend_from_slice(rng.piece(&[&b"\n"[..], b"\r\n", b"\n\n", b"\r\n\r\n", b""]));
        }
        out
    }

    /// `input` cut at random points (empty chunks and single bytes included).
    fn chunked<'a>(rng: &mut Rng, input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut rest = input;
        let style = rng.below(3);
        while !rest.is_empty() {
            let n = match style {
                0 => 1,
                1 => rng.below(rest.len() + 1),
                _ => rng.below(8),
            };
            let (head, tail) = rest.split_at(n.min(rest.len()));
            chunks.push(head);
            rest = tail;
        }
        if rng.one_in(3) {
            chunks.push(&[]);
        }
        chunks
    }

    #[test]
    fn fuzz_sse_chunkings_agree_and_never_panic() {
        let seed = env_seed(DEFAULT_SEED);
        let cases = env_cases(DEFAULT_CASES);
        let mut rng = Rng::new(seed);
        let started = std::time::Instant::now();
        let (mut limited, mut clean) = (0usize, 0usize);
        for case in 0..cases {
            let mut input = if rng.one_in(4) {
                generate(&mut rng)
            } else {
                let mut v = rng.pick(SEEDS).as_bytes().to_vec();
                if rng.one_in(2) {
                    v.extend_from_slice(rng.pick(SEEDS).as_bytes());
                }
                v
            };
            for _ in 0..1 + rng.below(4) {
                mutate(&mut rng, &mut input);
            }
            let shown = String::from_utf8_lossy(&input).into_owned();
            // The reference: the whole input at once, with the default (large) bound.
            let expected = SseParser::new()
                .push(&input)
                .unwrap_or_else(|e| panic!("case {case} (seed {seed:#x}): {e:?} under the default limit: {shown:?}"));
            for e in &expected {
                // What the node sends on (`encode`) parses back to the same event, unless a
                // value ends in a CR: `encode` ends the line right after it, and the parser strips
                // one CR before a LF, so such a trailing CR is lost on the way to the client.
                let plain = |s: &str| !s.ends_with('\r') && !s.contains("\r\n");
                if plain(&e.data) && e.event.as_deref().is_none_or(plain) && e.id.as_deref().is_none_or(plain) {
                    let again = SseParser::new().push(e.encode().as_bytes()).expect("re-encoded");
                    assert_eq!(again, vec![e.clone()], "case {case}: encode round trip of {shown:?}");
                }
            }
            let limit = *rng.pick(&[1usize, 2, 8, 16, 32, 64, 128, 1024, 1 << 20]);
            for _ in 0..3 {
                let mut p = SseParser::with_limit(limit);
                let mut got = Vec::new();
                let mut failed = false;
                for chunk in chunked(&mut rng, &input) {
                    match p.push(chunk) {
                        Ok(events) => got.extend(events),
                        Err(e) => {
                            assert_eq!(e, EventTooLarge { limit }, "case {case}");
                            failed = true;
                            break;
                        }
                    }
                }
                if failed {
                    limited += 1;
                    // What came out before the refusal is what the whole input starts with.
                    assert!(
                        expected.starts_with(&got),
                        "case {case} (seed {seed:#x}, limit {limit}): events before the limit error \
                         differ from the whole-input parse: {got:?} vs {expected:?} for {shown:?}"
                    );
                } else {
                    clean += 1;
                    assert_eq!(
                        got, expected,
                        "case {case} (seed {seed:#x}, limit {limit}): chunking changed the events of {shown:?}"
                    );
                    for e in &got {
                        // The bound is on bytes read; decoding replaces an invalid byte with
                        // U+FFFD (3 bytes), so what is kept is at most three times the limit.
                        let bytes = e.data.len() + e.event.as_ref().map_or(0, String::len);
                        assert!(
                            bytes <= 3 * limit,
                            "case {case}: an event of {bytes} bytes passed limit {limit}"
                        );
                    }
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "fuzz sse: seed {seed:#x}, {cases} cases ({clean} chunked parses clean, {limited} refused at the limit), \
             {:.0} cases/s ({secs:.2} s)",
            cases as f64 / secs.max(1e-9)
        );
    }
}
