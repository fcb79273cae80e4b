//! The on-disk framing of one entry: a magic byte, the entry kind, the payload length, a
//! checksum and the payload. A frame that is cut short or whose checksum fails is either a torn
//! tail (the last frame of the last segment, which recovery drops) or tampering.

use sha2::{Digest, Sha256};

/// First byte of every frame.
pub const MAGIC: u8 = 0xA7;
/// Bytes before the payload: magic, kind, length (u32 LE), checksum.
pub const HEADER: usize = 1 + 1 + 4 + 4;
/// The largest payload accepted; audit records are small.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An audit record: a leaf of the Merkle tree.
    Record = 0,
    /// A signed checkpoint of the tree so far (not a leaf).
    Checkpoint = 1,
}

/// SHA-256(kind || payload). For a record (kind 0) this is its RFC 6962 leaf hash, so one
/// hash serves as both the frame's checksum (its first four bytes) and the tree's leaf.
fn digest(kind: u8, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([kind]);
    h.update(payload);
    h.finalize().into()
}

/// Appends the frame of `payload` to `out`; returns SHA-256(kind || payload), which for a
/// record is its leaf hash.
pub fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) -> [u8; 32] {
    let len = u32::try_from(payload.len()).expect("payloads are bounded by MAX_PAYLOAD");
    let d = digest(kind as u8, payload);
    out.push(MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&d[..4]);
    out.extend_from_slice(payload);
    d
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes end inside the frame.
    #[error("the frame is cut short")]
    Short,
    /// Not a frame start.
    #[error("bad magic byte")]
    Magic,
    /// Unknown kind byte.
    #[error("unknown entry kind {0}")]
    Kind(u8),
    /// The length is beyond the limit.
    #[error("payload length {0} is beyond the limit")]
    Length(usize),
    /// The checksum does not match the payload.
    #[error("checksum mismatch")]
    Checksum,
}

/// A decoded frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// What it holds.
    pub kind: Kind,
    /// The payload.
    pub payload: &'a [u8],
    /// Bytes the frame takes, header included.
    pub len: usize,
    /// SHA-256(kind || payload): a record's leaf hash.
    pub digest: [u8; 32],
}

/// Decodes the frame at the start of `bytes`: its kind, payload and total length.
pub fn decode(bytes: &[u8]) -> Result<(Kind, &[u8], usize), FrameError> {
    decode_hashed(bytes).map(|f| (f.kind, f.payload, f.len))
}

/// [`decode`], also giving SHA-256(kind || payload) (a record's leaf hash).
pub fn decode_hashed(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    let header = bytes.get(..HEADER).ok_or(FrameError::Short)?;
    if header[0] != MAGIC {
        return Err(FrameError::Magic);
    }
    let kind = match header[1] {
        0 => Kind::Record,
        1 => Kind::Checkpoint,
        k => return Err(FrameError::Kind(k)),
    };
    let len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::Length(len));
    }
    let payload = bytes.get(HEADER..HEADER + len).ok_or(FrameError::Short)?;
    let d = digest(header[1], payload);
    if d[..4] != header[6..10] {
        return Err(FrameError::Checksum);
    }
    Ok(Frame {
        kind,
        payload,
        len: HEADER + len,
        digest: d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_record_digest_is_its_leaf_hash() {
        let mut buf = Vec::new();
        let d = encode(Kind::Record, b"{}", &mut buf);
        assert_eq!(d, crate::merkle::leaf_hash(b"{}"));
        assert_eq!(decode_hashed(&buf).unwrap().digest, d);
    }

    #[test]
    fn round_trip_and_every_cut_is_short() {
        let mut buf = Vec::new();
        encode(Kind::Record, b"{\"a\":1}", &mut buf);
        let (kind, payload, len) = decode(&buf).unwrap();
        assert_eq!(
            (kind, payload, len),
            (Kind::Record, &b"{\"a\":1}"[..], buf.len())
        );
        for cut in 0..buf.len() {
            assert_eq!(
                decode(&buf[..cut]).unwrap_err(),
                FrameError::Short,
                "cut {cut}"
            );
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_single_bit_flip_is_caught(payload in proptest::collection::vec(any::<u8>(), 1..64), bit in 0usize..512) {
            let mut buf = Vec::new();
            encode(Kind::Checkpoint, &payload, &mut buf);
            let bit = bit % (buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            // A flip may make the frame look longer (Short) but never yields the same payload.
            if let Ok((k, p, _)) = decode(&buf) {
                prop_assert!(k != Kind::Checkpoint || p != payload.as_slice());
            }
        }
    }
}
