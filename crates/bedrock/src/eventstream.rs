//! The AWS event-stream framing (`application/vnd.amazon.eventstream`): each message is a
//! prelude (total length, headers length, CRC-32 of those eight bytes), headers, a payload and
//! a CRC-32 of everything before it; integers big-endian. Checked byte for byte against
//! messages botocore decodes (`tests/fixtures/eventstream.jsonl`).

/// Bytes of the prelude (two lengths and their CRC).
const PRELUDE: usize = 12;
/// Bytes of the trailing message CRC.
const TRAILER: usize = 4;
/// The largest message accepted when decoding (AWS's limit is 16 MiB).
pub const MAX_MESSAGE: usize = 16 << 20;
/// The largest headers section (AWS's limit is 128 KiB).
pub const MAX_HEADERS: usize = 128 << 10;

/// A header's value. Only strings are written; every type decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Type 0 / 1.
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Short(i16),
    /// Type 4.
    Int(i32),
    /// Type 5.
    Long(i64),
    /// Type 6.
    Bytes(Vec<u8>),
    /// Type 7.
    String(String),
    /// Type 8: milliseconds since the epoch.
    Timestamp(i64),
    /// Type 9.
    Uuid([u8; 16]),
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Headers in order.
    pub headers: Vec<(String, Value)>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Message {
    /// A string header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            Value::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More bytes are needed.
    #[error("the message is incomplete")]
    Incomplete,
    /// A length is out of range.
    #[error("a message or header length is out of range")]
    Length,
    /// The prelude CRC does not match.
    #[error("the prelude checksum does not match")]
    PreludeCrc,
    /// The message CRC does not match.
    #[error("the message checksum does not match")]
    MessageCrc,
    /// A header is malformed (name, type or value).
    #[error("a header is malformed")]
    Header,
}

/// A header too long to encode (names up to 255 bytes, string values up to 65,535).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a header name or value is too long for the event-stream format")]
pub struct TooLong;

/// Encodes one message with string headers.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Result<Vec<u8>, TooLong> {
    let mut h = Vec::new();
    for (name, value) in headers {
        let n = u8::try_from(name.len()).map_err(|_| TooLong)?;
        let v = u16::try_from(value.len()).map_err(|_| TooLong)?;
        h.push(n);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&v.to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = PRELUDE + h.len() + payload.len() + TRAILER;
    let total32 = u32::try_from(total).map_err(|_| TooLong)?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&total32.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes the message at the start of `bytes`; returns it and the bytes it took.
pub fn decode(bytes: &[u8]) -> Result<(Message, usize), DecodeError> {
    let prelude = bytes.get(..PRELUDE).ok_or(DecodeError::Incomplete)?;
    let total = be32(&prelude[0..4]) as usize;
    let headers_len = be32(&prelude[4..8]) as usize;
    if crc32fast::hash(&prelude[..8]) != be32(&prelude[8..12]) {
        return Err(DecodeError::PreludeCrc);
    }
    if total > MAX_MESSAGE || headers_len > MAX_HEADERS || PRELUDE + headers_len + TRAILER > total {
        return Err(DecodeError::Length);
    }
    let message = bytes.get(..total).ok_or(DecodeError::Incomplete)?;
    let (body, crc) = message.split_at(total - TRAILER);
    if crc32fast::hash(body) != be32(crc) {
        return Err(DecodeError::MessageCrc);
    }
    let headers = decode_headers(&body[PRELUDE..PRELUDE + headers_len])?;
    Ok((
        Message {
            headers,
            payload: body[PRELUDE + headers_len..].to_vec(),
        },
        total,
    ))
}

fn decode_headers(mut b: &[u8]) -> Result<Vec<(String, Value)>, DecodeError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
        if b.len() < n {
            return Err(DecodeError::Header);
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = take(&mut b, 1)?[0] as usize;
        if n == 0 {
            return Err(DecodeError::Header);
        }
        let name = std::str::from_utf8(take(&mut b, n)?)
            .map_err(|_| DecodeError::Header)?
            .to_owned();
        let kind = take(&mut b, 1)?[0];
        let fixed = |b: &mut &[u8], k: usize| take(b, k).map(<[u8]>::to_vec);
        let value = match kind {
            0 => Value::Bool(true),
            1 => Value::Bool(false),
            2 => Value::Byte(take(&mut b, 1)?[0] as i8),
            3 => Value::Short(i16::from_be_bytes(
                fixed(&mut b, 2)?
                    .try_into()
                    .map_err(|_| DecodeError::Header)?,
            )),
            4 => Value::Int(i32::from_be_bytes(
                fixed(&mut b, 4)?
                    .try_into()
                    .map_err(|_| DecodeError::Header)?,
            )),
            5 | 8 => {
                let v = i64::from_be_bytes(
                    fixed(&mut b, 8)?
                        .try_into()
                        .map_err(|_| DecodeError::Header)?,
                );
                if kind == 5 {
                    Value::Long(v)
                } else {
                    Value::Timestamp(v)
                }
            }
            6 | 7 => {
                let len = u16::from_be_bytes(
                    fixed(&mut b, 2)?
                        .try_into()
                        .map_err(|_| DecodeError::Header)?,
                ) as usize;
                let v = take(&mut b, len)?.to_vec();
                if kind == 6 {
                    Value::Bytes(v)
                } else {
                    Value::String(String::from_utf8(v).map_err(|_| DecodeError::Header)?)
                }
            }
            9 => Value::Uuid(
                fixed(&mut b, 16)?
                    .try_into()
                    .map_err(|_| DecodeError::Header)?,
            ),
            _ => return Err(DecodeError::Header),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// The event-stream message of one Bedrock stream event (`:event-type` = `event`, JSON payload).
pub fn event(event_type: &str, json: &[u8]) -> Result<Vec<u8>, TooLong> {
    encode(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        json,
    )
}

/// The event-stream message of an error in the middle of a stream.
pub fn exception(exception_type: &str, json: &[u8]) -> Result<Vec<u8>, TooLong> {
    encode(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(headers in proptest::collection::vec(("[a-z:-]{1,20}", ".{0,40}"), 0..6),
                      payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let h: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let bytes = encode(&h, &payload).unwrap();
            let (m, used) = decode(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(&m.payload, &payload);
            let names: Vec<&str> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
            prop_assert_eq!(names, headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>());
            for cut in [0, 1, 11, 12, bytes.len() - 1] {
                prop_assert_eq!(decode(&bytes[..cut]).unwrap_err(), DecodeError::Incomplete);
            }
        }

        #[test]
        fn a_flipped_bit_never_decodes_to_the_same_message(payload in proptest::collection::vec(any::<u8>(), 0..100), bit in 0usize..2000) {
            let bytes = event("contentBlockDelta", &payload).unwrap();
            let mut bad = bytes.clone();
            let bit = bit % (bad.len() * 8);
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok((m, _)) = decode(&bad) {
                prop_assert!(m.payload != payload || m.header(":event-type") != Some("contentBlockDelta"));
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn limits() {
        assert_eq!(encode(&[(&"n".repeat(256), "v")], b""), Err(TooLong));
        assert!(encode(&[(&"n".repeat(255), &"v".repeat(65_535))], b"").is_ok());
    }
}
