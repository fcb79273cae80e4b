//! Property tests: no input, however mangled, may panic the validator.

mod common;

use highside_gguf::{validate_bytes, validate_reader, Limits};
use proptest::prelude::*;

fn valid_bytes() -> Vec<u8> {
    common::valid().build()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = validate_bytes(&bytes, &Limits::default());
    }

    #[test]
    fn arbitrary_bytes_after_valid_magic_never_panic(
        version in prop_oneof![Just(2u32), Just(3u32)],
        tensors in 0u64..8,
        kvs in 0u64..8,
        rest in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        // Get past the header checks so the fuzzing reaches key-value and tensor parsing.
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(version.to_le_bytes());
        bytes.extend(tensors.to_le_bytes());
        bytes.extend(kvs.to_le_bytes());
        bytes.extend(rest);
        let _ = validate_bytes(&bytes, &Limits::default());
    }

    #[test]
    fn single_byte_mutations_never_panic(idx in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = valid_bytes();
        let i = idx.index(bytes.len());
        bytes[i] = byte;
        let _ = validate_bytes(&bytes, &Limits::default());
    }

    #[test]
    fn multi_byte_mutations_and_truncation_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        claimed_extra in 0u64..1_000_000,
    ) {
        let mut bytes = valid_bytes();
        for (idx, byte) in edits {
            let i = idx.index(bytes.len());
            bytes[i] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = validate_bytes(&bytes, &Limits::default());
        // A reader that lies about its length must not panic either.
        let claimed = (bytes.len() as u64).saturating_add(claimed_extra);
        let _ = validate_reader(bytes.as_slice(), claimed, &Limits::default());
    }

    #[test]
    fn mutating_any_header_byte_of_valid_file_is_caught_or_harmless(
        idx in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        // Whatever a mutation does, a successful result must still be internally consistent.
        let mut bytes = valid_bytes();
        let i = idx.index(bytes.len());
        bytes[i] = byte;
        if let Ok(info) = validate_bytes(&bytes, &Limits::default()) {
            prop_assert_eq!(info.tensors.len() as u64, info.tensor_count);
            prop_assert_eq!(info.metadata.len() as u64, info.metadata_count);
            prop_assert_eq!(info.data_offset % info.alignment, 0);
            for t in &info.tensors {
                let end = info.data_offset + t.offset + t.n_bytes;
                prop_assert!(end <= bytes.len() as u64);
                prop_assert_eq!(t.offset % info.alignment, 0);
            }
        }
    }
}
