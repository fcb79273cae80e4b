//! An incremental decoder of server-sent events as upstreams send them: bytes arrive in
//! arbitrary pieces; complete events come out. Bounded: an event larger than the limit is an
//! error, never an unbounded buffer.

/// One event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` field(s).
    pub data: String,
}

/// The upstream sent an event larger than the decoder's limit, or bytes that are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event grew past the limit.
    #[error("an upstream event is larger than {0} bytes")]
    TooLarge(usize),
    /// A line is not UTF-8.
    #[error("an upstream event is not UTF-8")]
    Utf8,
}

/// Feeds bytes, yields events.
#[derive(Debug)]
pub struct SseDecoder {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    limit: usize,
}

impl SseDecoder {
    /// A decoder refusing events (and lines) over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            event: None,
            data: None,
            limit,
        }
    }

    /// Adds `bytes` and returns every event they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| SseError::Utf8)?
                .to_owned();
            start = end + 1;
            if let Some(e) = self.line(&line)? {
                out.push(e);
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > self.limit {
            return Err(SseError::TooLarge(self.limit));
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return Ok(self.data.take().map(|data| SseEvent {
                event: self.event.take(),
                data,
            }));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if let Some(d) = &mut self.data {
                    d.push('\n');
                    d.push_str(value);
                } else {
                    self.data = Some(value.to_owned());
                }
                if self.data.as_ref().is_some_and(|d| d.len() > self.limit) {
                    return Err(SseError::TooLarge(self.limit));
                }
            }
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STREAM: &str = "event: message_start\ndata: {\"a\":1}\n\n: comment\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\n\n";

    fn whole() -> Vec<SseEvent> {
        SseDecoder::new(1 << 20).feed(STREAM.as_bytes()).unwrap()
    }

    #[test]
    fn events_fields_and_comments() {
        let e = whole();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].event.as_deref(), Some("message_start"));
        assert_eq!(e[0].data, "{\"a\":1}");
        assert_eq!(
            e[1],
            SseEvent {
                event: None,
                data: "x\ny".into()
            }
        );
        assert_eq!(e[2].data, "[DONE]");
    }

    #[test]
    fn limits_hold() {
        let mut d = SseDecoder::new(8);
        assert_eq!(d.feed(b"data: 0123456789"), Err(SseError::TooLarge(8)));
        let mut d = SseDecoder::new(8);
        assert_eq!(d.feed(b"data: 012345678\n"), Err(SseError::TooLarge(8)));
        assert_eq!(
            SseDecoder::new(64).feed(b"data: \xff\n"),
            Err(SseError::Utf8)
        );
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..6)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let bytes = STREAM.as_bytes();
            let mut d = SseDecoder::new(1 << 20);
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                got.extend(d.feed(&bytes[at..c.max(at)]).unwrap());
                at = c.max(at);
            }
            prop_assert_eq!(got, whole());
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SseDecoder::new(64).feed(&bytes);
        }
    }
}
