use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use highside_catalog::Progress;
use highside_store::{DataDir, Store};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Copy a GGUF file into the model store, verifying and validating it.
    Import {
        /// The GGUF file (e.g. carried across the air gap).
        file: PathBuf,
        /// The name clients will use in the `model` field.
        #[arg(long)]
        name: String,
        /// The highest classification the model is accredited to process.
        #[arg(long, default_value = "UNCLASSIFIED")]
        label: String,
    },
    /// List imported models.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a model from the catalog (and its file, once nothing refers to it).
    Remove {
        /// The model name.
        name: String,
    },
}

struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, total: u64) {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message("copying and hashing");
        self.0 = Some(bar);
    }
    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
    }
}

pub fn run(data: &Path, cmd: ModelsCommand) -> anyhow::Result<()> {
    let dir = DataDir::open(data)?;
    let store = dir.open_store()?;
    match cmd {
        ModelsCommand::Import { file, name, label } => {
            let encodings = crate::label::encodings(data, None)?;
            let label = encodings
                .parse_accreditation(&label)
                .with_context(|| format!("--label '{label}' is not a valid accreditation"))?;
            let label = encodings.banner(&label);
            // The log first: an import that cannot be recorded must not happen.
            let log = crate::audit::open(data, "local")
                .context("the import must be audited, and the audit log cannot be opened")?;
            // A directory is an embedding model (config.json, model.safetensors,
            // tokenizer.json); a file is a GGUF chat model.
            let refused = || format!("import of {} refused; nothing was written", file.display());
            let (record, tensors) = if file.is_dir() {
                let (record, _) = highside_catalog::import_embedding(
                    &dir,
                    &store,
                    &file,
                    &name,
                    &label,
                    &mut Bar(None),
                )
                .with_context(refused)?;
                (record, None)
            } else {
                let (record, info) =
                    highside_catalog::import(&dir, &store, &file, &name, &label, &mut Bar(None))
                        .with_context(refused)?;
                (record, Some(info.tensor_count))
            };
            let record_json = serde_json::to_value(&record)?;
            if let Err(e) = log.append_json(&highside_audit::Record::now(
                "local",
                crate::audit::local_event(
                    "model.import",
                    &record.name,
                    serde_json::Value::Null,
                    record_json,
                ),
            )) {
                // Unrecorded, it is undone.
                let _ = highside_catalog::remove(&dir, &store, &record.name);
                return Err(anyhow::Error::from(e)
                    .context("the import could not be audited and was undone"));
            }
            // Recorded: a failing close (its checkpoint) does not undo it; the next open
            // recovers the log and signs it.
            log.close()
                .context("the import is recorded, but the audit log did not close cleanly")?;
            println!(
                "imported {} ({} {}, {} parameters, {} tensors, context {}) sha256:{}",
                record.name,
                record.format.as_str(),
                record
                    .architecture
                    .as_deref()
                    .unwrap_or("unknown architecture"),
                record.parameters,
                tensors.map_or("-".into(), |t| t.to_string()),
                record
                    .context_length
                    .map_or("unknown".into(), |c| c.to_string()),
                record.digest
            );
        }
        ModelsCommand::List { json } => {
            let models = store.list_models()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&models)?);
            } else {
                println!(
                    "{:<24} {:<10} {:>14} {:>8} {:>10}  {:<14} {:<20} IMPORTED",
                    "NAME", "ARCH", "PARAMETERS", "CONTEXT", "SIZE MB", "DIGEST", "LABEL"
                );
                for m in models {
                    println!(
                        "{:<24} {:<10} {:>14} {:>8} {:>10.1}  {:<14} {:<20} {}",
                        m.name,
                        m.architecture.as_deref().unwrap_or("-"),
                        m.parameters,
                        m.context_length.map_or("-".into(), |c| c.to_string()),
                        m.size_bytes as f64 / 1e6,
                        &m.digest[..12.min(m.digest.len())],
                        m.label,
                        m.imported_at
                    );
                }
            }
        }
        ModelsCommand::Remove { name } => {
            let log = crate::audit::open(data, "local")
                .context("the removal must be audited, and the audit log cannot be opened")?;
            let record = highside_catalog::remove(&dir, &store, &name)?;
            crate::audit::record_local(
                &log,
                "model.remove",
                &record.name,
                serde_json::to_value(&record)?,
                serde_json::Value::Null,
            )
            .context("the model was removed but the audit record could not be written")?;
            println!("removed {} (sha256:{})", record.name, record.digest);
        }
    }
    Ok(())
}
