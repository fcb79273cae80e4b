//! Behavioural tests: a valid file is accepted with the right facts, and every class of
//! malformation is rejected with the specific error a user would need.

mod common;

use common::*;
use highside_gguf::{
    validate_bytes, validate_file, validate_reader, GgmlType, GgufError, Limits, MetaValue,
};

fn check(bytes: &[u8]) -> Result<highside_gguf::GgufInfo, GgufError> {
    validate_bytes(bytes, &Limits::default())
}

/// Asserts the bytes are rejected with an error matching the pattern, and returns it.
macro_rules! rejects {
    ($bytes:expr, $pat:pat $(if $guard:expr)?) => {{
        match check(&$bytes) {
            Err(e @ $pat) $(if $guard)? => e,
            other => panic!("expected {}, got {:?}", stringify!($pat), other),
        }
    }};
}

#[test]
fn valid_file_reports_correct_facts() {
    let g = valid();
    let bytes = g.build();
    let info = check(&bytes).expect("valid file must pass");

    assert_eq!(info.version, 3);
    assert_eq!(info.alignment, 64);
    assert_eq!(info.data_offset, g.data_offset() as u64);
    assert_eq!(info.data_offset % 64, 0);
    assert!(info.data_offset >= g.header_len() as u64);
    assert_eq!(info.tensor_count, 3);
    assert_eq!(info.metadata_count, METADATA_KVS + 1);
    assert_eq!(info.metadata.len() as u64, info.metadata_count);
    assert_eq!(info.architecture.as_deref(), Some("llama"));
    assert_eq!(info.name.as_deref(), Some("tiny-test"));
    assert_eq!(info.context_length, Some(2048));
    assert_eq!(info.chat_template.as_deref(), Some(CHAT_TEMPLATE));
    assert_eq!(info.file_type, Some(3));
    assert_eq!(info.parameter_count, 24 + 128 + 8);

    let t = &info.tensors;
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].name, "token_embd.weight");
    assert_eq!(t[0].dims, vec![8, 3]);
    assert_eq!(t[0].dtype, GgmlType::F32);
    assert_eq!((t[0].offset, t[0].n_bytes), (0, 96));
    assert_eq!(t[1].name, "blk.0.attn_q.weight");
    assert_eq!(t[1].dtype, GgmlType::Q4_1);
    assert_eq!(t[1].dims, vec![64, 2]);
    assert_eq!((t[1].offset, t[1].n_bytes), (128, 80));
    assert_eq!((t[2].offset, t[2].n_bytes), (256, 32));

    let m = &info.metadata;
    assert_eq!(m["general.alignment"], MetaValue::U64(64));
    assert_eq!(m["llama.u8"], MetaValue::U64(200));
    assert_eq!(m["llama.i8"], MetaValue::I64(-3));
    assert_eq!(m["llama.u16"], MetaValue::U64(60000));
    assert_eq!(m["llama.i16"], MetaValue::I64(-30000));
    assert_eq!(m["llama.i32"], MetaValue::I64(-7));
    assert_eq!(m["llama.f32"], MetaValue::F64(0.5));
    assert_eq!(m["llama.bool"], MetaValue::Bool(true));
    assert_eq!(m["llama.u64"], MetaValue::U64(u64::MAX));
    assert_eq!(m["llama.i64"], MetaValue::I64(i64::MIN));
    assert_eq!(m["llama.f64"], MetaValue::F64(-2.5));
    assert_eq!(
        m["tokenizer.ggml.tokens"],
        MetaValue::Array {
            elem_type: T_STRING,
            len: 3
        }
    );
    assert_eq!(
        m["tokenizer.ggml.scores"],
        MetaValue::Array {
            elem_type: T_F32,
            len: 3
        }
    );
    assert_eq!(
        m["test.nested"],
        MetaValue::Array {
            elem_type: T_ARRAY,
            len: 2
        }
    );
}

#[test]
fn version_2_and_default_alignment_accepted() {
    let mut g = with_metadata(Gguf::new())
        .tensor("a", &[32], GGML_Q4_1, 0)
        .tensor("b", &[3], GGML_F32, 32)
        .data(44);
    g.version = 2;
    let info = check(&g.build()).expect("valid v2 file must pass");
    assert_eq!(info.version, 2);
    assert_eq!(info.alignment, 32);
    assert_eq!(info.data_offset % 32, 0);
    assert_eq!(info.parameter_count, 35);
}

#[test]
fn empty_model_without_tensors_or_metadata_is_accepted() {
    let info = check(&Gguf::new().build()).expect("minimal file must pass");
    assert_eq!((info.tensor_count, info.metadata_count), (0, 0));
    assert_eq!(info.architecture, None);
    assert_eq!(info.context_length, None);
}

#[test]
fn context_length_accepts_signed_and_rejects_negative() {
    let ok = Gguf::new().kv_str("general.architecture", "qwen2").kv(
        "qwen2.context_length",
        T_I32,
        &4096i32.to_le_bytes(),
    );
    assert_eq!(check(&ok.build()).unwrap().context_length, Some(4096));
    let neg = Gguf::new().kv_str("general.architecture", "qwen2").kv(
        "qwen2.context_length",
        T_I64,
        &(-1i64).to_le_bytes(),
    );
    assert_eq!(check(&neg.build()).unwrap().context_length, None);
}

#[test]
fn every_truncation_is_rejected() {
    let g = valid();
    let bytes = g.build();
    let header_end = g.header_len();
    for n in 0..bytes.len() {
        match check(&bytes[..n]) {
            Err(GgufError::Truncated { offset, .. }) if n < header_end => {
                assert!(
                    offset <= n as u64,
                    "prefix {n}: offset {offset} beyond the data"
                );
            }
            Err(GgufError::TensorOutOfBounds { file_len, .. }) if n >= header_end => {
                assert_eq!(file_len, n as u64);
            }
            other => panic!("prefix of {n} bytes: unexpected {other:?}"),
        }
    }
}

#[test]
fn reader_shorter_than_declared_length_is_truncated() {
    let bytes = valid().build();
    let half = &bytes[..bytes.len() / 4];
    let err = validate_reader(half, bytes.len() as u64, &Limits::default()).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
}

#[test]
fn validate_reader_never_reads_tensor_data() {
    let g = valid();
    let bytes = g.build();
    // Supply only the header; the declared length covers the data the reader cannot provide.
    let header = &bytes[..g.header_len()];
    let info = validate_reader(header, bytes.len() as u64, &Limits::default())
        .expect("header alone is enough when file_len is right");
    assert_eq!(info.tensor_count, 3);
}

#[test]
fn validate_file_works_on_disk_and_reports_missing_files() {
    let dir = std::env::temp_dir().join(format!("highside-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.gguf");
    std::fs::write(&path, valid().build()).unwrap();
    let info = validate_file(&path, &Limits::default()).expect("file on disk must pass");
    assert_eq!(info.tensor_count, 3);

    let mut short = valid().build();
    short.pop();
    std::fs::write(&path, &short).unwrap();
    assert!(matches!(
        validate_file(&path, &Limits::default()),
        Err(GgufError::TensorOutOfBounds { .. })
    ));

    let missing = validate_file(&dir.join("absent.gguf"), &Limits::default()).unwrap_err();
    assert!(matches!(missing, GgufError::File { .. }), "{missing:?}");
    assert!(missing.to_string().contains("absent.gguf"));
    let is_dir = validate_file(&dir, &Limits::default()).unwrap_err();
    assert!(matches!(is_dir, GgufError::File { .. }), "{is_dir:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_magic() {
    let mut g = valid();
    g.magic = *b"GGML";
    let e = rejects!(g.build(), GgufError::BadMagic { found } if found == *b"GGML");
    assert!(e.to_string().contains("not a GGUF file"));
}

#[test]
fn unsupported_versions() {
    for v in [0u32, 1, 4, 0x0300_0000, u32::MAX] {
        let mut g = valid();
        g.version = v;
        rejects!(g.build(), GgufError::UnsupportedVersion(x) if x == v);
    }
}

#[test]
fn absurd_tensor_counts() {
    for count in [u64::MAX, 1_000_000_000, 65_537] {
        let mut g = valid();
        g.tensor_count = Some(count);
        rejects!(g.build(), GgufError::TooMany { count: c, limit: 65_536, .. } if c == count);
    }
}

#[test]
fn absurd_kv_counts() {
    for count in [u64::MAX, 1_000_000_000] {
        let mut g = valid();
        g.kv_count = Some(count);
        rejects!(g.build(), GgufError::TooMany { count: c, .. } if c == count);
    }
}

#[test]
fn kv_count_larger_than_present_is_truncated() {
    let mut g = Gguf::new().kv_u32("a.b", 1);
    g.kv_count = Some(60_000);
    let bytes = g.build();
    rejects!(
        bytes[..g.header_len()],
        GgufError::Truncated { offset: 43, .. }
    );
}

#[test]
fn tensor_count_larger_than_present_is_truncated() {
    let mut g = valid();
    g.tensor_count = Some(4);
    let bytes = g.build();
    rejects!(bytes[..g.header_len()], GgufError::Truncated { .. });
}

#[test]
fn configured_limits_are_applied() {
    let bytes = valid().build();
    let lim = Limits {
        max_tensors: 2,
        ..Limits::default()
    };
    assert!(matches!(
        validate_bytes(&bytes, &lim),
        Err(GgufError::TooMany {
            count: 3,
            limit: 2,
            ..
        })
    ));
    let lim = Limits {
        max_metadata_kv: 5,
        ..Limits::default()
    };
    assert!(matches!(
        validate_bytes(&bytes, &lim),
        Err(GgufError::TooMany { limit: 5, .. })
    ));
    let lim = Limits {
        max_array_len: 2,
        ..Limits::default()
    };
    assert!(matches!(
        validate_bytes(&bytes, &lim),
        Err(GgufError::TooMany {
            count: 3,
            limit: 2,
            ..
        })
    ));
    let lim = Limits {
        max_string_len: 10,
        ..Limits::default()
    };
    assert!(matches!(
        validate_bytes(&bytes, &lim),
        Err(GgufError::StringTooLong { limit: 10, .. })
    ));
    let lim = Limits {
        max_metadata_bytes: 200,
        ..Limits::default()
    };
    assert!(matches!(
        validate_bytes(&bytes, &lim),
        Err(GgufError::MetadataTooLarge { limit: 200, .. })
    ));
}

#[test]
fn huge_string_lengths() {
    for len in [u64::MAX, 1 << 40, (1 << 20) + 1] {
        // As a key.
        let mut key = len.to_le_bytes().to_vec();
        key.extend_from_slice(b"abc");
        let mut g = Gguf::new();
        g.kv_count = Some(1);
        let mut bytes = g.build();
        bytes.truncate(g.header_len());
        bytes.extend_from_slice(&key);
        rejects!(bytes, GgufError::StringTooLong { len: l, offset: 24, .. } if l == len);

        // As a value.
        let mut val = len.to_le_bytes().to_vec();
        val.extend_from_slice(b"abc");
        let g = Gguf::new().kv("general.name", T_STRING, &val);
        rejects!(g.build(), GgufError::StringTooLong { len: l, .. } if l == len);

        // As an array element.
        let g = Gguf::new().kv("tokenizer.ggml.tokens", T_ARRAY, &garray(T_STRING, 1, &val));
        rejects!(g.build(), GgufError::StringTooLong { len: l, .. } if l == len);
    }
}

#[test]
fn string_longer_than_file_is_truncated_not_allocated() {
    // Within the string limit but far beyond the file: must fail before allocating 1 MiB.
    let mut val = (1u64 << 20).to_le_bytes().to_vec();
    val.extend_from_slice(b"abc");
    let g = Gguf::new().kv("general.name", T_STRING, &val);
    rejects!(g.build(), GgufError::Truncated { .. });
}

#[test]
fn absurd_array_lengths() {
    for len in [u64::MAX, 1 << 40, 16_777_217] {
        let g = Gguf::new().kv("x.y", T_ARRAY, &garray(T_U32, len, &[]));
        rejects!(g.build(), GgufError::TooMany { count: c, .. } if c == len);
    }
    // Within the limit but not in the file.
    let g = Gguf::new().kv("x.y", T_ARRAY, &garray(T_U64, 16_777_216, &[1, 2, 3]));
    rejects!(g.build(), GgufError::Truncated { .. });
}

#[test]
fn unknown_value_types() {
    for ty in [13u32, 255, u32::MAX] {
        let g = valid().kv("x.y", ty, &[0; 8]);
        let e = rejects!(g.build(), GgufError::UnknownValueType { ty: t, .. } if t == ty);
        assert!(e.to_string().contains("'x.y'"));
        let g = valid().kv("x.y", T_ARRAY, &garray(ty, 1, &[0; 8]));
        rejects!(g.build(), GgufError::UnknownValueType { ty: t, .. } if t == ty);
    }
}

#[test]
fn invalid_utf8_key_value_and_array_element() {
    let g = Gguf::new().kv_raw(b"general.\xff\xfe", T_U32, &1u32.to_le_bytes());
    rejects!(g.build(), GgufError::InvalidUtf8 { offset: 32, .. });
    let g = Gguf::new().kv("general.name", T_STRING, &gstr(b"\xc3\x28"));
    rejects!(g.build(), GgufError::InvalidUtf8 { .. });
    let elems = [gstr(b"ok"), gstr(b"\xed\xa0\x80")].concat();
    let g = Gguf::new().kv(
        "tokenizer.ggml.tokens",
        T_ARRAY,
        &garray(T_STRING, 2, &elems),
    );
    rejects!(g.build(), GgufError::InvalidUtf8 { .. });
}

#[test]
fn empty_and_control_character_keys() {
    let g = Gguf::new().kv("", T_U8, &[1]);
    rejects!(g.build(), GgufError::InvalidKey { index: 0, .. });
    let g = Gguf::new().kv_u32("a", 1).kv("evil\x1b[2Jkey", T_U8, &[1]);
    let e = rejects!(g.build(), GgufError::InvalidKey { index: 1, .. });
    assert!(
        !e.to_string().contains('\x1b'),
        "escape sequence leaked: {e}"
    );
}

#[test]
fn duplicate_key() {
    let g = valid().kv_str("general.name", "again");
    let e = rejects!(g.build(), GgufError::DuplicateKey(_));
    assert!(
        matches!(&e, GgufError::DuplicateKey(k) if k == "general.name"),
        "{e:?}"
    );
}

#[test]
fn bad_bool_scalar_and_array() {
    let g = Gguf::new().kv("x.flag", T_BOOL, &[2]);
    rejects!(
        g.build(),
        GgufError::BadBool {
            value: 2,
            offset: 42,
            ..
        }
    );
    let g = Gguf::new().kv("x.flags", T_ARRAY, &garray(T_BOOL, 4, &[0, 1, 1, 0xff]));
    // 24 header + 8+7 key + 4 type + 4 elem type + 8 len = 55, then 3 good bytes.
    rejects!(
        g.build(),
        GgufError::BadBool {
            value: 0xff,
            offset: 58,
            ..
        }
    );
}

#[test]
fn array_nesting_depth() {
    let inner = garray(T_U8, 1, &[1]);
    let depth2 = garray(T_ARRAY, 1, &inner);
    let ok = Gguf::new().kv("x.ok", T_ARRAY, &depth2);
    assert!(check(&ok.build()).is_ok());
    let depth3 = garray(T_ARRAY, 1, &depth2);
    let g = Gguf::new().kv("x.deep", T_ARRAY, &depth3);
    rejects!(g.build(), GgufError::ArrayTooDeep { limit: 2, .. });
}

#[test]
fn alignment_must_be_u32_power_of_two() {
    for a in [0u32, 3, 48, u32::MAX] {
        let g = Gguf::new().kv_u32("general.alignment", a);
        rejects!(g.build(), GgufError::BadAlignment { .. });
    }
    let g = Gguf::new().kv("general.alignment", T_U64, &32u64.to_le_bytes());
    let e = rejects!(g.build(), GgufError::BadAlignment { .. });
    assert!(e.to_string().contains("u32"), "{e}");
    let g = Gguf::new().kv_str("general.alignment", "32");
    rejects!(g.build(), GgufError::BadAlignment { .. });
}

#[test]
fn tensor_offset_past_end() {
    let g = valid_with_tensor("late.weight", &[8], GGML_F32, 4096);
    let bytes = g.build();
    let e = rejects!(bytes, GgufError::TensorOutOfBounds { index: 3, .. });
    let expected_end = g.data_offset() as u64 + 4096 + 32;
    let msg = e.to_string();
    assert_eq!(
        msg,
        format!(
            "tensor 'late.weight' (#3) ends at byte {expected_end} but the file has {} bytes",
            bytes.len()
        )
    );
}

#[test]
fn tensor_offset_overflow() {
    let g = valid_with_tensor("huge.weight", &[8], GGML_F32, u64::MAX - 63);
    rejects!(g.build(), GgufError::Overflow { .. });
}

#[test]
fn tensors_overlapping() {
    // 192 lies inside attn_q (128..208) and is 64-aligned, so only the overlap check can catch it.
    let g = valid_with_tensor("overlap.weight", &[8], GGML_F32, 192);
    let e = rejects!(g.build(), GgufError::TensorsOverlap { .. });
    match e {
        GgufError::TensorsOverlap {
            a,
            b,
            a_end,
            b_start,
            ..
        } => {
            assert_eq!(a, "blk.0.attn_q.weight");
            assert_eq!(b, "overlap.weight");
            assert_eq!((a_end, b_start), (208, 192));
        }
        _ => unreachable!(),
    }
    // Identical offsets overlap too.
    let g = valid_with_tensor("same.weight", &[8], GGML_F32, 0);
    rejects!(g.build(), GgufError::TensorsOverlap { .. });
    // Adjacent, non-overlapping placement is fine.
    let g = valid_with_tensor("next.weight", &[8], GGML_F32, 320);
    assert!(check(&g.build()).is_ok());
}

#[test]
fn misaligned_offset() {
    let g = valid_with_tensor("odd.weight", &[8], GGML_F32, 320 + 32);
    rejects!(
        g.build(),
        GgufError::MisalignedTensor {
            offset: 352,
            alignment: 64,
            index: 3,
            ..
        }
    );
}

#[test]
fn unknown_dtypes() {
    for ty in [4u32, 5, 31, 32, 33, 36, 37, 38, 40, u32::MAX] {
        let g = valid_with_tensor("weird.weight", &[256], ty, 320);
        let e = rejects!(g.build(), GgufError::UnknownDtype { ty: t, .. } if t == ty);
        assert!(e.to_string().contains("'weird.weight'"), "{e}");
    }
}

#[test]
fn n_dims_out_of_range() {
    for n in [0usize, 5] {
        let dims = vec![1u64; n];
        let g = valid_with_tensor("dims.weight", &dims, GGML_F32, 320);
        let e = rejects!(g.build(), GgufError::BadTensor { index: 3, .. });
        assert!(e.to_string().contains(&format!("{n} dimensions")), "{e}");
    }
    let g = valid_with_tensor("four.weight", &[2, 2, 2, 2], GGML_F32, 320);
    assert!(check(&g.build()).is_ok());
}

#[test]
fn zero_dimension() {
    let g = valid_with_tensor("zero.weight", &[8, 0], GGML_F32, 320);
    let e = rejects!(g.build(), GgufError::BadTensor { .. });
    assert!(e.to_string().contains("dimension 1 is 0"), "{e}");
}

#[test]
fn first_dim_not_multiple_of_block() {
    let g = valid_with_tensor("q.weight", &[33, 32], GGML_Q4_1, 320);
    let e = rejects!(g.build(), GgufError::BadTensor { .. });
    assert!(e.to_string().contains("block size 32"), "{e}");
    // The same element count with a block-aligned ne[0] is fine.
    let g = valid_with_tensor("q.weight", &[32, 33], GGML_Q4_1, 320);
    assert!(check(&g.build()).is_ok());
}

#[test]
fn element_count_overflow() {
    for dims in [
        vec![1u64 << 32, 1 << 32],
        vec![u64::MAX, 2],
        vec![1 << 32, 1 << 31],
        vec![1 << 20, 1 << 20, 1 << 20, 1 << 20],
    ] {
        let g = valid_with_tensor("big.weight", &dims, GGML_F32, 320);
        rejects!(g.build(), GgufError::Overflow { .. });
    }
    // Fits in i64 as an element count but its byte size does not.
    let g = valid_with_tensor("big.weight", &[1 << 62], GGML_F32, 320);
    rejects!(g.build(), GgufError::Overflow { .. });
    // Representable but far larger than the file.
    let g = valid_with_tensor("big.weight", &[1 << 40], GGML_F32, 320);
    rejects!(g.build(), GgufError::TensorOutOfBounds { .. });
}

#[test]
fn tensor_names() {
    let g = valid_with_tensor("", &[8], GGML_F32, 320);
    rejects!(g.build(), GgufError::BadTensor { index: 3, .. });
    let long = "x".repeat(64);
    let g = valid_with_tensor(&long, &[8], GGML_F32, 320);
    rejects!(
        g.build(),
        GgufError::StringTooLong {
            len: 64,
            limit: 63,
            ..
        }
    );
    let ok = "x".repeat(63);
    let g = valid_with_tensor(&ok, &[8], GGML_F32, 320);
    assert!(check(&g.build()).is_ok());
    let g = valid_with_tensor("output_norm.weight", &[8], GGML_F32, 320);
    rejects!(g.build(), GgufError::DuplicateTensor { index: 3, .. });
    let g = valid_with_tensor("bad\nname", &[8], GGML_F32, 320);
    rejects!(g.build(), GgufError::BadTensor { .. });
    let mut info = gstr(b"\xff\xff");
    info.extend(1u32.to_le_bytes());
    info.extend(8u64.to_le_bytes());
    info.extend(GGML_F32.to_le_bytes());
    info.extend(320u64.to_le_bytes());
    let g = valid().tensor_raw(&info).data(4096);
    rejects!(g.build(), GgufError::InvalidUtf8 { .. });
}

#[test]
fn error_messages_are_sentences_with_context() {
    let mut g = valid();
    g.tensor_count = Some(1_000_000_000);
    let msg = check(&g.build()).unwrap_err().to_string();
    assert!(
        msg.contains("1000000000 tensors") && msg.contains("65536"),
        "{msg}"
    );

    let bytes = valid().build();
    let msg = check(&bytes[..30]).unwrap_err().to_string();
    assert!(
        msg.contains("truncated") && msg.contains("byte 24"),
        "{msg}"
    );
}
