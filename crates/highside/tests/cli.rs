//! The command line on real files: import validation leaves nothing behind on failure.

mod common;

use common::{data_dir_with_model, highside, model_path};

fn list_json(dir: &std::path::Path) -> serde_json::Value {
    let out = highside(dir, &["models", "list", "--json"]);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn model_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn import_records_the_model_facts() {
    let (dir, _key) = data_dir_with_model();
    let list = list_json(dir.path());
    let m = &list[0];
    assert_eq!(m["name"], "smollm2");
    assert_eq!(m["architecture"], "llama");
    assert_eq!(m["context_length"], 8192);
    assert_eq!(
        m["size_bytes"],
        std::fs::metadata(model_path()).unwrap().len()
    );
    assert!(m["parameters"].as_u64().unwrap() > 100_000_000);
    assert!(m["chat_template"].as_str().unwrap().contains("im_start"));
    assert_eq!(m["digest"].as_str().unwrap().len(), 64);
    assert_eq!(m["label"], "UNCLASSIFIED");
    assert_eq!(
        model_files(dir.path()),
        [format!("{}.gguf", m["digest"].as_str().unwrap())]
    );
}

#[test]
fn malformed_files_are_rejected_and_nothing_is_written() {
    let (dir, _key) = data_dir_with_model();
    let before_list = list_json(dir.path());
    let before_files = model_files(dir.path());
    let good = std::fs::read(model_path()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    cases.push(("truncated-header", good[..20].to_vec(), "truncated"));
    // Cutting the file short leaves the last tensors' data outside it.
    cases.push((
        "tensor-past-end",
        good[..good.len() / 2].to_vec(),
        "ends at byte",
    ));
    let mut bad_magic = good[..4096].to_vec();
    bad_magic[0] = b'X';
    cases.push(("bad-magic", bad_magic, "magic"));
    let mut absurd_tensors = good[..4096].to_vec();
    absurd_tensors[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push(("absurd-tensor-count", absurd_tensors, "tensor"));
    let mut absurd_kv = good[..4096].to_vec();
    absurd_kv[16..24].copy_from_slice(&1_000_000_000u64.to_le_bytes());
    cases.push(("absurd-kv-count", absurd_kv, "metadata"));
    let mut huge_string = good[..4096].to_vec();
    // The first metadata key's length follows the 24-byte header.
    huge_string[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("huge-string", huge_string, "long"));
    for (name, bytes, needle) in cases {
        let path = work.path().join(format!("{name}.gguf"));
        std::fs::write(&path, bytes).unwrap();
        let out = highside(
            dir.path(),
            &["models", "import", path.to_str().unwrap(), "--name", name],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(
            stderr.contains("not a valid GGUF model"),
            "{name}: {stderr}"
        );
        assert!(
            stderr.to_lowercase().contains(needle),
            "{name}: expected '{needle}' in: {stderr}"
        );
        assert!(stderr.contains("nothing was written"), "{name}: {stderr}");
        assert_eq!(
            list_json(dir.path()),
            before_list,
            "{name} changed the catalog"
        );
        assert_eq!(
            model_files(dir.path()),
            before_files,
            "{name} left a file behind"
        );
    }
}

#[test]
fn duplicate_names_bad_names_and_removal() {
    let (dir, _key) = data_dir_with_model();
    let model = model_path();
    let out = highside(
        dir.path(),
        &[
            "models",
            "import",
            model.to_str().unwrap(),
            "--name",
            "smollm2",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = highside(
        dir.path(),
        &[
            "models",
            "import",
            model.to_str().unwrap(),
            "--name",
            "../evil",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid model name"));
    let out = highside(dir.path(), &["models", "remove", "smollm2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(list_json(dir.path()), serde_json::json!([]));
    assert!(model_files(dir.path()).is_empty());
    let out = highside(dir.path(), &["models", "remove", "smollm2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no model named"));
}

#[test]
fn commands_refuse_an_uninitialised_directory_and_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = highside(&dir.path().join("nope"), &["models", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("highside init"));

    let out = highside(dir.path(), &["init"]);
    assert!(out.status.success());
    let config = std::fs::read_to_string(dir.path().join("highside.toml")).unwrap();
    assert!(config.contains("max_sequences = 16"));
    std::fs::write(dir.path().join("highside.toml"), "max_sequences = 0\n").unwrap();
    let out = highside(dir.path(), &["serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_sequences"));
}

#[test]
fn label_check_canonicalises_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let out = highside(
        dir.path(),
        &[
            "label",
            "check",
            "(s//rel to usa, fvey)",
            "TOP SECRET//SI//NOFORN",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("banner:  SECRET//REL TO USA, AUS, CAN, GBR, NZL"),
        "{text}"
    );
    assert!(
        text.contains("compare: the second dominates the first"),
        "{text}"
    );
    assert!(text.contains("join:    TOP SECRET//SI//NOFORN"), "{text}");
    let out = highside(dir.path(), &["label", "check", "TS//BOGUS"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown marking 'BOGUS'"));
    // An enclave's own encodings in the data directory replace the built-in ones.
    std::fs::write(
        dir.path().join("label-encodings.toml"),
        "levels = [{ name = \"UNCLASSIFIED\", abbrev = \"U\" }, { name = \"RESTRICTED\", abbrev = \"R\" }]\ncountries = [\"USA\"]\nsystem_high = \"RESTRICTED\"\n",
    )
    .unwrap();
    let out = highside(dir.path(), &["label", "check", "(R)"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("banner:  RESTRICTED"));
    assert!(!highside(dir.path(), &["label", "check", "SECRET"])
        .status
        .success());
}

#[test]
fn init_creates_an_owner_only_audit_signing_key_and_exports_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = highside(dir.path(), &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = dir.path().join("audit-signing.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let pkcs8 = std::fs::read(&key).unwrap();
    let signer = highside_audit::Signer::from_pkcs8(&pkcs8).unwrap();
    let public = std::fs::read_to_string(dir.path().join("audit-signing.pub")).unwrap();
    assert_eq!(public.trim(), signer.public_key().to_hex());
    // The output names the public key and never the private one.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(public.trim()));
    assert!(!printed.contains(&hex::encode(&pkcs8)));
}
