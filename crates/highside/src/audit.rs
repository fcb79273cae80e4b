//! `highside audit ...`: verify, query, export and prove the audit log, from the data directory
//! or offline from a copy of the log and the public key alone; and local commands' records.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use highside_audit::{
    AuditLog, Checkpoint, Disk, Event, Filter, Options, Proof, PublicKey, Record, Signer,
};

/// The audit log's Ed25519 signing key (PKCS#8) in the data directory, owner-only.
pub const KEY_FILE: &str = "audit-signing.key";
/// Its public key, hex, for auditors.
pub const PUBLIC_FILE: &str = "audit-signing.pub";
/// The log's directory under the data directory.
pub const DIR: &str = "audit";

/// Where the log is and what verifies it; both default to the data directory's.
#[derive(Args)]
pub struct Source {
    /// The log directory (default: DATA/audit); a copy works offline.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The public key: 64 hex digits or a file holding them (default: DATA/audit-signing.pub).
    #[arg(long)]
    public_key: Option<String>,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the tree and check every frame and signature; names the first bad entry and
    /// exits non-zero.
    Verify {
        #[command(flatten)]
        source: Source,
        /// A checkpoint kept earlier (JSON file, from `highside audit checkpoint`): the log must
        /// still contain exactly the records it signed.
        #[arg(long)]
        trusted: Option<PathBuf>,
    },
    /// Print the latest signed checkpoint (keep it to pass as `verify --trusted` later).
    Checkpoint {
        #[command(flatten)]
        source: Source,
    },
    /// Print matching records as JSON lines: {"index": N, "record": {...}}.
    Query {
        #[command(flatten)]
        source: Source,
        /// Agency ID.
        #[arg(long)]
        agency: Option<String>,
        /// User ID.
        #[arg(long)]
        user: Option<String>,
        /// allow or deny.
        #[arg(long)]
        decision: Option<String>,
        /// Record type: auth_failure, decision, completion, admin.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Request ID.
        #[arg(long)]
        request_id: Option<String>,
        /// Records at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Records before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// At most this many records.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Every record as one JSON object per line, with its index and leaf hash (for a SIEM).
    Export {
        #[command(flatten)]
        source: Source,
        /// JSON lines (the only format).
        #[arg(long, required = true)]
        jsonl: bool,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print an inclusion proof of a record (--record N) or a consistency proof between two
    /// checkpoints (--from SIZE --to SIZE), checkable offline with `check-proof`.
    Prove {
        #[command(flatten)]
        source: Source,
        /// The record's index.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        record: Option<u64>,
        /// With --record: the checkpoint (by its tree size) to prove against (default: the
        /// first that covers the record).
        #[arg(long, requires = "record")]
        size: Option<u64>,
        /// The earlier checkpoint's tree size.
        #[arg(long, requires = "to")]
        from: Option<u64>,
        /// The later checkpoint's tree size.
        #[arg(long, requires = "from")]
        to: Option<u64>,
    },
    /// Check a proof file from `prove` with only the public key.
    CheckProof {
        /// The proof (JSON).
        file: PathBuf,
        /// The public key: 64 hex digits or a file holding them (default: DATA/audit-signing.pub).
        #[arg(long)]
        public_key: Option<String>,
    },
}

fn public_key(data: &Path, given: Option<&str>) -> anyhow::Result<PublicKey> {
    let text = match given {
        Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => s.to_owned(),
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
        }
        None => {
            let path = data.join(PUBLIC_FILE);
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {} (pass --public-key)", path.display()))?
        }
    };
    Ok(PublicKey::from_hex(text.trim())?)
}

impl Source {
    fn resolve(&self, data: &Path) -> anyhow::Result<(PathBuf, PublicKey)> {
        let dir = self.dir.clone().unwrap_or_else(|| data.join(DIR));
        if !dir.is_dir() {
            bail!("no audit log at {}", dir.display());
        }
        Ok((dir, public_key(data, self.public_key.as_deref())?))
    }
}

/// The data directory's signing key.
pub fn signer(data: &Path) -> anyhow::Result<Signer> {
    let path = data.join(KEY_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read the audit signing key {} (run `highside init`)",
            path.display()
        )
    })?;
    Ok(Signer::from_pkcs8(&bytes)?)
}

/// Opens the data directory's log for writing (recovering it). Fails if a server has it.
pub fn open(data: &Path, node: &str) -> anyhow::Result<AuditLog> {
    let options = Options {
        node: node.to_owned(),
        ..Options::default()
    };
    Ok(AuditLog::open(
        &data.join(DIR),
        signer(data)?,
        Arc::new(Disk),
        options,
    )?)
}

/// The local user, for records of commands run on the data directory itself.
fn local_actor() -> highside_audit::Actor {
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    highside_audit::Actor {
        client: Some(format!("local:{who}")),
        ..highside_audit::Actor::default()
    }
}

/// The record of a change made by a local command.
pub fn local_event(
    action: &str,
    target: &str,
    before: serde_json::Value,
    after: serde_json::Value,
) -> Event {
    Event::Admin {
        actor: local_actor(),
        action: action.to_owned(),
        target: target.to_owned(),
        before,
        after,
        denied: None,
        target_agency: None,
    }
}

/// Records a change made by a local command, durably, and closes the log with a checkpoint.
pub fn record_local(
    log: &AuditLog,
    action: &str,
    target: &str,
    before: serde_json::Value,
    after: serde_json::Value,
) -> anyhow::Result<()> {
    let record = Record::now("local", local_event(action, target, before, after));
    log.append_json(&record)
        .context("cannot write the audit record")?;
    log.close().context("cannot close the audit log")?;
    Ok(())
}

pub fn run(data: &Path, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { source, trusted } => verify(data, &source, trusted.as_deref()),
        AuditCommand::Checkpoint { source } => {
            let (dir, key) = source.resolve(data)?;
            let s = highside_audit::scan(&dir, &key, true, |_, _| {})?;
            let cp = s.last_checkpoint.context("the log has no checkpoint yet")?;
            println!("{}", serde_json::to_string(&cp)?);
            Ok(())
        }
        AuditCommand::Query {
            source,
            agency,
            user,
            decision,
            kind,
            request_id,
            since,
            until,
            limit,
        } => {
            let (dir, key) = source.resolve(data)?;
            let matcher = Filter {
                agency,
                user,
                decision,
                kind,
                since,
                until,
                request_id,
            }
            .compile()?;
            let limit = limit.unwrap_or(usize::MAX);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut shown = 0usize;
            let mut failed = None;
            highside_audit::scan(&dir, &key, true, |i, payload| {
                if shown >= limit || failed.is_some() || !matcher.matches(payload) {
                    return;
                }
                shown += 1;
                let line = format!(
                    "{{\"index\":{i},\"record\":{}}}\n",
                    String::from_utf8_lossy(payload)
                );
                if let Err(e) = out.write_all(line.as_bytes()) {
                    failed = Some(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            out.flush()?;
            Ok(())
        }
        AuditCommand::Export { source, out, .. } => {
            let (dir, key) = source.resolve(data)?;
            let sink: Box<dyn Write> = match &out {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut sink = std::io::BufWriter::new(sink);
            let mut failed = None;
            let s = highside_audit::scan(&dir, &key, true, |i, payload| {
                if failed.is_some() {
                    return;
                }
                let mut line = match serde_json::from_slice::<serde_json::Map<_, _>>(payload) {
                    Ok(map) => map,
                    Err(e) => {
                        failed = Some(anyhow::anyhow!("record {i} is not a JSON object: {e}"));
                        return;
                    }
                };
                line.insert("index".into(), i.into());
                line.insert(
                    "leaf_hash".into(),
                    hex::encode(highside_audit::merkle::leaf_hash(payload)).into(),
                );
                let written = serde_json::to_writer(&mut sink, &line)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| sink.write_all(b"\n").map_err(Into::into));
                if let Err(e) = written {
                    failed = Some(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            sink.flush()?;
            if let Some(path) = out {
                eprintln!("exported {} records to {}", s.records, path.display());
            }
            Ok(())
        }
        AuditCommand::Prove {
            source,
            record,
            size,
            from,
            to,
        } => {
            let (dir, key) = source.resolve(data)?;
            let mut payload = None;
            let s = highside_audit::scan(&dir, &key, true, |i, p| {
                if Some(i) == record {
                    payload = Some(p.to_vec());
                }
            })?;
            let proof = match (record, from, to) {
                (Some(i), _, _) => {
                    let payload = payload.with_context(|| {
                        format!("no record {i}: the log holds {} records", s.records)
                    })?;
                    Proof::Inclusion(highside_audit::prove_inclusion(&s, i, &payload, size)?)
                }
                (None, Some(old), Some(new)) => {
                    Proof::Consistency(highside_audit::prove_consistency(&s, old, new)?)
                }
                _ => bail!("give --record N, or --from SIZE --to SIZE"),
            };
            // A proof that does not check here would only mislead the auditor who gets it.
            proof.verify(&key)?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(())
        }
        AuditCommand::CheckProof {
            file,
            public_key: pk,
        } => {
            let key = public_key(data, pk.as_deref())?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let proof: Proof = serde_json::from_str(&text).context("not a proof file")?;
            proof.verify(&key)?;
            match proof {
                Proof::Inclusion(p) => println!(
                    "ok: record {} is in the log of {} records signed at {} by the key",
                    p.index, p.checkpoint.tree_size, p.checkpoint.time
                ),
                Proof::Consistency(p) => println!(
                    "ok: the log of {} records ({}) extends the log of {} records ({}) unchanged",
                    p.new.tree_size, p.new.time, p.old.tree_size, p.old.time
                ),
            }
            Ok(())
        }
    }
}

fn verify(data: &Path, source: &Source, trusted: Option<&Path>) -> anyhow::Result<()> {
    let (dir, key) = source.resolve(data)?;
    let trusted: Option<Checkpoint> = trusted
        .map(|p| -> anyhow::Result<Checkpoint> {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_str(text.trim()).context("--trusted is not a checkpoint")
        })
        .transpose()?;
    // A running server's log grows while we read it: its last entry may be half-written and
    // its newest records not yet signed. Everything up to the last checkpoint must verify.
    let live = highside_audit::is_locked(&dir);
    let result = if live {
        highside_audit::scan(&dir, &key, true, |_, _| {})
    } else {
        highside_audit::verify(&dir, &key, trusted.as_ref())
    };
    let s = result.map_err(|e| anyhow::anyhow!("the audit log does NOT verify: {e}"))?;
    if live {
        if let Some(t) = &trusted {
            // Re-check the trusted prefix on the live log.
            let size = usize::try_from(t.tree_size)?;
            if !t.verify(&key)
                || t.tree_size > s.records
                || t.root_hash() != Some(highside_audit::merkle::root(&s.tree.leaves()[..size]))
            {
                bail!("the audit log does NOT verify: it does not match the trusted checkpoint");
            }
        }
    }
    let last = s.last_checkpoint.as_ref();
    println!(
        "ok: {} records, {} checkpoints, {} segments; root {} ({})",
        s.records,
        s.checkpoints,
        s.segments.len(),
        hex::encode(s.root()),
        last.map_or("no checkpoint".into(), |c| format!(
            "last signed at {} by {}",
            c.time, c.node
        )),
    );
    if live && s.unsigned > 0 {
        println!(
            "note: a server is writing this log; its {} newest records are not signed yet",
            s.unsigned
        );
    }
    Ok(())
}
