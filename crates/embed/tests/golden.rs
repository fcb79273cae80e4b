//! The encoder against reference embeddings computed with a numpy transcription of BERT
//! (`tests/golden/make_embeddings.py`): the same token ids, cosine similarity above 0.9999,
//! unit length, and the same vectors whether an input is encoded alone or batched with
//! longer ones.

use std::path::PathBuf;

use highside_embed::{EmbedError, Embedder};

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("HIGHSIDE_EMBED_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/highside/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "the demo embedding model is missing at {}: run scripts/fetch-embedding-model or set HIGHSIDE_EMBED_MODEL",
        dir.display()
    );
    dir
}

fn golden() -> Vec<(String, Vec<u32>, Vec<f32>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/minilm_embeddings.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["text"].as_str().unwrap().to_owned(),
                e["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect(),
                e["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect(),
            )
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn embeddings_match_the_reference_alone_and_batched() {
    let e = Embedder::load(&model_dir(), "minilm").unwrap();
    assert_eq!((e.info().dimensions, e.info().max_tokens), (384, 512));
    assert!(e.info().parameters > 22_000_000);
    let cases = golden();
    let texts: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let ids = e.tokenize(&texts).unwrap();
    for (got, case) in ids.iter().zip(&cases) {
        assert_eq!(got, &case.1, "token ids of {:?}", case.0);
    }
    let batched = e.embed_blocking(ids.clone()).unwrap();
    for ((vector, case), one) in batched.iter().zip(&cases).zip(&ids) {
        assert_eq!(vector.len(), 384);
        let cos = dot(vector, &case.2);
        assert!(cos > 0.9999, "{:?}: cosine {cos}", case.0);
        assert!((dot(vector, vector) - 1.0).abs() < 1e-5);
        let alone = e.embed_blocking(vec![one.clone()]).unwrap();
        let drift = alone[0]
            .iter()
            .zip(vector)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            drift < 1e-4,
            "{:?}: batched and alone differ by {drift}",
            case.0
        );
    }
}

#[test]
fn inputs_are_never_truncated() {
    let e = Embedder::load(&model_dir(), "minilm").unwrap();
    let long = "word ".repeat(600);
    match e.tokenize(&["ok".into(), long]) {
        Err(EmbedError::TooLong { index, tokens, max }) => {
            assert_eq!((index, max), (1, 512));
            assert!(tokens > 512);
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    assert!(matches!(
        e.tokenize(&[String::new()]),
        Err(EmbedError::Empty(0))
    ));
    // Concurrent callers share batches and still get their own answers.
    let ids = e
        .tokenize(&[
            "alpha".into(),
            "a much longer sentence about something else".into(),
        ])
        .unwrap();
    let e = std::sync::Arc::new(e);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let e = std::sync::Arc::clone(&e);
            let input = ids[i % 2].clone();
            std::thread::spawn(move || e.embed_blocking(vec![input]).unwrap().remove(0))
        })
        .collect();
    let out: Vec<Vec<f32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, v) in out.iter().enumerate() {
        assert!(dot(v, &out[i % 2]) > 0.99999);
    }
    assert!(dot(&out[0], &out[1]) < 0.99);
}
