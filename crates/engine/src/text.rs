//! Turning token bytes into streamed text: a token can end in the middle of a UTF-8 character,
//! and a stop string can span several tokens, so text is released only once it is complete
//! and cannot be the start of a stop string.

/// Incremental detokenizer with stop-string detection.
#[derive(Debug, Default)]
pub(crate) struct TextStream {
    /// Bytes of an incomplete UTF-8 character at the end of the last token.
    pending: Vec<u8>,
    /// Decoded text held back because it may be the start of a stop string.
    held: String,
    stops: Vec<String>,
}

/// What one push released.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Released {
    /// Text safe to send to the client now.
    pub text: String,
    /// A stop string was found; generation must end and nothing after it is sent.
    pub stopped: bool,
}

impl TextStream {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Self::default()
        }
    }

    /// Adds one token's bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Released {
        self.pending.extend_from_slice(bytes);
        self.decode_pending();
        if let Some(at) = self.first_stop() {
            let text = self.held[..at].to_owned();
            self.held.clear();
            self.pending.clear();
            return Released {
                text,
                stopped: true,
            };
        }
        let keep = self.stop_prefix_len();
        let split = self.held.len() - keep;
        let text = self.held[..split].to_owned();
        self.held.drain(..split);
        Released {
            text,
            stopped: false,
        }
    }

    /// Releases everything still held when generation ends for another reason.
    pub(crate) fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.held);
        if !self.pending.is_empty() {
            text.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
        text
    }

    fn decode_pending(&mut self) {
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    self.held.push_str(s);
                    self.pending.clear();
                    return;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    // Safe: from_utf8 vouched for these bytes.
                    self.held.push_str(
                        std::str::from_utf8(&self.pending[start..valid]).unwrap_or_default(),
                    );
                    match e.error_len() {
                        // Incomplete character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return;
                        }
                        // Bytes that can never become valid: replace, as a lossy decoder would.
                        Some(n) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            start = valid + n;
                        }
                    }
                }
            }
        }
    }

    fn first_stop(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
    }

    /// Length of the longest suffix of `held` that is a proper prefix of some stop string.
    fn stop_prefix_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(self.held.len());
            for len in (best + 1..=max).rev() {
                let start = self.held.len() - len;
                if self.held.is_char_boundary(start) && stop.starts_with(&self.held[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(stops: &[&str], chunks: &[&[u8]]) -> (String, bool) {
        let mut t = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for c in chunks {
            let r = t.push(c);
            out.push_str(&r.text);
            if r.stopped {
                return (out, true);
            }
        }
        out.push_str(&t.finish());
        (out, false)
    }

    #[test]
    fn multibyte_character_split_across_tokens() {
        let euro = "€".as_bytes(); // 3 bytes
        let mut t = TextStream::new(vec![]);
        assert_eq!(t.push(&euro[..1]).text, "");
        assert_eq!(t.push(&euro[1..2]).text, "");
        assert_eq!(t.push(&euro[2..]).text, "€");
    }

    #[test]
    fn stop_string_across_tokens_is_cut_and_never_sent() {
        assert_eq!(
            run(&["END"], &[b"hello E", b"N", b"D more"]),
            ("hello ".into(), true)
        );
        assert_eq!(run(&["\n\n"], &[b"a\n", b"\nb"]), ("a".into(), true));
    }

    #[test]
    fn held_prefix_is_released_when_it_does_not_become_a_stop() {
        let mut t = TextStream::new(vec!["END".into()]);
        assert_eq!(t.push(b"x E").text, "x ");
        assert_eq!(t.push(b"Nd").text, "ENd");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        assert_eq!(run(&[], &[b"a\xffb"]), ("a\u{fffd}b".into(), false));
    }

    proptest! {
        // Differential against the obvious reference: decode everything at once, cut at the
        // first stop. However the bytes are chunked, the stream releases exactly that.
        #[test]
        fn chunking_never_changes_the_text(
            text in "[a-c€é\\n]{0,40}",
            cuts in proptest::collection::vec(0usize..60, 0..10),
            stop in proptest::option::of("[a-c€\\n]{1,3}"),
        ) {
            let bytes = text.as_bytes();
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
            let stops: Vec<&str> = stop.iter().map(String::as_str).collect();
            let expected = match stop.as_deref().and_then(|s| text.find(s)) {
                Some(at) => (text[..at].to_owned(), true),
                None => (text.clone(), false),
            };
            prop_assert_eq!(run(&stops, &chunks), expected);
        }
    }
}
