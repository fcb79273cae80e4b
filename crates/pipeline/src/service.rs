//! The kinds of work a model does (chat and completions on the embedded engine or an upstream
//! route, embeddings on the embedded encoder or an upstream route), each brought to its
//! backend through [`Service::admit`], with no HTTP types in sight.

use std::sync::Arc;

use highside_engine::{EngineError, Event};
use highside_monitor::Monitor;
use highside_openai::{ApiError, Prepared, PromptInput};
use highside_template::TemplateError;

use crate::admission::{Caller, Cost, Target};
use crate::audit::{sha256_hex, Auditor, CompletionAudit};
use crate::meter::{Meter, RateHeaders, Refusal};
use crate::Registry;

/// The request pipeline over the loaded models.
#[derive(Debug)]
pub struct Service {
    registry: Registry,
    monitor: Monitor,
    audit: Arc<Auditor>,
    meter: Arc<Meter>,
}

/// A generation that has been admitted by a backend.
#[derive(Debug)]
pub struct Generation {
    /// The model name as requested.
    pub model: String,
    /// Backend events, scanned for markings above the request's label; dropping this cancels
    /// the generation.
    pub events: crate::output::Output,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Whether the client asked for server-sent events.
    pub stream: bool,
    /// Whether a usage chunk ends the stream.
    pub include_usage: bool,
    /// The output's label: the canonical banner of the request's high-water mark.
    pub label: String,
    /// Start the text with the banner line.
    pub banner: bool,
    /// Kinds of personal data found, when the agency flags them.
    pub pii: Vec<&'static str>,
    /// The completion record (and the settlement of its charge) still to be made.
    pub audit: CompletionAudit,
    /// `x-ratelimit-*` for the answer.
    pub rate_headers: RateHeaders,
    /// The functions offered, whose calls are parsed out of the output.
    pub tools: Option<highside_openai::tools::CallSource>,
}

impl Generation {
    /// The banner line its text starts with, when the client asked for one.
    pub fn banner_line(&self) -> Option<String> {
        self.banner.then(|| format!("{}\n", self.label))
    }

    /// The whole answer, banner line first; returns once the completion record is durable.
    pub async fn whole(self) -> Result<crate::answer::Whole, ApiError> {
        let banner = self.banner_line();
        crate::answer::Answer::new(self.events, self.audit, self.tools)
            .whole(banner)
            .await
    }
}

/// Where an admitted embedding request is computed.
#[derive(Debug)]
pub enum EmbeddingWork {
    /// The embedded encoder, on these token ids.
    Local(Vec<Vec<u32>>),
    /// A route's deployments, in order.
    Upstream {
        /// Deployments the monitor allows, first choice first.
        candidates: Vec<Arc<highside_providers::Deployment>>,
        /// Attempts per deployment.
        attempts: u32,
    },
}

/// An admitted embedding request, ready for the encoder.
#[derive(Debug)]
pub struct EmbeddingStart {
    /// What computes it.
    pub work: EmbeddingWork,
    /// Their total.
    pub tokens: u64,
    /// The output's label.
    pub label: String,
    /// Kinds of personal data found.
    pub pii: Vec<&'static str>,
    /// The completion record still to be made.
    pub audit: CompletionAudit,
    /// `x-ratelimit-*`.
    pub rate_headers: RateHeaders,
}

/// What a route's deployments are sent for a chat request (each protocol puts it in its own
/// shape): the conversation, tools and stop strings, and the sampling they share.
pub(crate) fn upstream_request(
    req: &Prepared,
    messages: &[highside_inference::Message],
    most: u32,
) -> highside_providers::ChatRequest {
    let (tools, tool_choice) = crate::upstream::offered(req.tools.as_ref());
    highside_providers::ChatRequest {
        // Validation already spelled `developer` as `system`.
        messages: messages.to_vec(),
        max_tokens: Some(most),
        temperature: Some(req.params.temperature),
        top_p: Some(req.params.top_p),
        stop: req.params.stop.clone(),
        seed: req.params.seed,
        stream: req.stream,
        tools,
        tool_choice,
        parallel_tool_calls: req.tools.as_ref().and_then(|t| t.parallel),
    }
}

/// The audited digest of a prompt as the engine receives it: SHA-256 of its bytes, followed,
/// when the request has stop strings (which the engine matches too), by a zero byte, `stop`
/// and their JSON list.
fn prompt_digest(prompt: &[u8], stop: &[String]) -> String {
    if stop.is_empty() {
        return sha256_hex(prompt);
    }
    let mut bytes = prompt.to_vec();
    bytes.extend_from_slice(b"\0stop");
    bytes.extend_from_slice(serde_json::to_string(stop).unwrap_or_default().as_bytes());
    sha256_hex(&bytes)
}

/// Tokens a provider may add to a prompt when tools are offered (Anthropic documents a few
/// hundred for its tool-use system prompt).
const TOOL_PROMPT_ALLOWANCE: u64 = 1024;

fn engine_error(e: EngineError, param: &str) -> ApiError {
    match e {
        EngineError::Overloaded { .. } => ApiError::overloaded(e.to_string(), 1),
        EngineError::ContextOverflow { .. } => ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::bad_request(e.to_string(), Some(param))
        },
        EngineError::EmptyPrompt => ApiError::bad_request(e.to_string(), Some(param)),
        EngineError::Param(p) => ApiError::bad_request(
            format!("Invalid '{}': {}", p.param, p.message),
            Some(p.param),
        ),
        EngineError::Stopped | EngineError::Backend(_) | EngineError::Load { .. } => {
            ApiError::unavailable(e.to_string())
        }
    }
}

/// A token-id prompt is checked before anything reads it: more ids than the context holds is
/// a 400 anyway (each id may be many bytes when read back), and llama.cpp aborts on an id out
/// of range.
fn check_token_ids(ids: &[i32], model: &crate::LoadedModel) -> Result<(), ApiError> {
    let context = model.engine.info().context_length as usize;
    if ids.len() > context {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::bad_request(
                format!(
                    "the prompt has {} tokens; this model's context holds {context}",
                    ids.len()
                ),
                Some("prompt"),
            )
        });
    }
    let n_vocab = model.engine.info().n_vocab;
    if let Some(bad) = ids.iter().find(|&&t| t as u32 >= n_vocab) {
        return Err(ApiError::bad_request(
            format!("token id {bad} is outside the model's vocabulary of {n_vocab}"),
            Some("prompt"),
        ));
    }
    Ok(())
}

/// What the engine is given for an admitted generation.
struct EngineWork {
    prompt: Vec<i32>,
    params: highside_engine::SamplingParams,
    param: &'static str,
    prompt_tokens: u32,
}

impl Service {
    /// Wraps the loaded models, the reference monitor every request passes and the audit
    /// log every decision is recorded in.
    pub fn new(
        registry: Registry,
        monitor: Monitor,
        audit: Arc<Auditor>,
        meter: Arc<Meter>,
    ) -> Self {
        Self {
            registry,
            monitor,
            audit,
            meter,
        }
    }

    /// Metering.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// The audit log.
    pub fn auditor(&self) -> &Arc<Auditor> {
        &self.audit
    }

    /// The reference monitor.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// The loaded models.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A chat or completion request, admitted and queued on the model's engine (or sent to
    /// the route's deployments). Blocks on the audit log: call it from a blocking thread.
    pub fn start(&self, caller: &Caller<'_>, req: Prepared) -> Result<Generation, Refusal> {
        let Some(model) = self.registry.get(&req.model) else {
            return match self.registry.route(&req.model) {
                Some(route) => self.start_upstream(caller, req, route),
                None if self.registry.embedding(&req.model).is_some() => {
                    Err(ApiError::bad_request(
                        format!("'{}' is an embedding model: use /v1/embeddings", req.model),
                        Some("model"),
                    )
                    .into())
                }
                None => Err(ApiError::model_not_found(&req.model).into()),
            };
        };
        let engine = &model.engine;
        if let PromptInput::Tokens(ids) = &req.input {
            check_token_ids(ids, model)?;
        }
        // Token-id prompts are read back as text, so markings cannot hide in token ids.
        let detokenize = |ids: &[i32]| {
            let bytes: Vec<u8> = ids.iter().flat_map(|&t| engine.token_bytes(t)).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let all = highside_openai::client_texts(highside_openai::Work::Generate(&req), &detokenize);
        let texts: Vec<&str> = all.iter().map(AsRef::as_ref).collect();
        let target = Target::Local {
            name: &model.name,
            accreditation: model.accreditation(),
        };
        let ticket = self.admit(
            caller,
            target,
            req.declared_label.as_deref(),
            &texts,
            |_| self.prepare_engine(model, &req),
        )?;
        let (
            EngineWork {
                prompt,
                params,
                param,
                prompt_tokens,
            },
            mut ticket,
        ) = ticket.split();
        let events = engine
            .submit(prompt, params)
            .map_err(|e| engine_error(e, param))?;
        ticket.handed_over();
        let events = crate::output::Output::scanned(
            events,
            Arc::clone(self.monitor.detector()),
            ticket.label.clone(),
        );
        Ok(Generation {
            model: req.model,
            events,
            prompt_tokens,
            stream: req.stream,
            include_usage: req.include_usage,
            label: ticket.banner,
            banner: req.banner,
            pii: ticket.pii,
            // Handed over: it lives in async code from here, and a drop there does not block.
            audit: ticket.audit,
            rate_headers: ticket.rate_headers,
            tools: req
                .tools
                .filter(|t| t.callable())
                .map(highside_openai::tools::CallSource::Parsed),
        })
    }

    /// An admitted request's prompt as the engine takes it: control-token text refused, the
    /// chat template rendered (with the tools it is shown), tokenized, and `max_tokens` fixed
    /// (never more than the context leaves: a prompt is never truncated).
    fn prepare_engine(
        &self,
        model: &crate::LoadedModel,
        req: &Prepared,
    ) -> Result<(Cost, EngineWork), Refusal> {
        let engine = &model.engine;
        let (prompt, param, digest) = match &req.input {
            PromptInput::Chat(messages) => {
                // Control-token text in a message would become real control tokens below.
                for (i, m) in messages.iter().enumerate() {
                    let texts = highside_openai::texts::message_texts(std::slice::from_ref(m));
                    if let Some(t) = engine
                        .info()
                        .control_texts
                        .iter()
                        .find(|t| texts.iter().any(|x| x.contains(t.as_str())))
                    {
                        return Err(ApiError::bad_request(
                            format!("messages[{i}].content contains the model's control token {t:?}, which could forge conversation structure"),
                            Some(&format!("messages[{i}].content")),
                        ).into());
                    }
                }
                // With `tool_choice: none` the model is not shown the tools.
                let offered = req.tools.as_ref().filter(|t| t.callable());
                let tool_texts = offered
                    .map(highside_openai::texts::tool_texts)
                    .unwrap_or_default();
                if let Some(t) = engine
                    .info()
                    .control_texts
                    .iter()
                    .find(|t| tool_texts.iter().any(|x| x.contains(t.as_str())))
                {
                    return Err(ApiError::bad_request(
                        format!("a tool definition contains the model's control token {t:?}"),
                        Some("tools"),
                    )
                    .into());
                }
                let template = model
                    .template
                    .as_ref()
                    .map_err(|e| ApiError::internal(e.clone()))?;
                let native = template.supports_tools();
                let messages = crate::tools::messages(messages, offered, native);
                let listed = offered.filter(|_| native).map(|t| t.template_value());
                let text = template
                    .render_with_tools(&messages, true, listed.as_ref())
                    .map_err(|e| match e {
                        TemplateError::Rejected(_) | TemplateError::Missing => {
                            ApiError::bad_request(e.to_string(), Some("messages"))
                        }
                        TemplateError::Compile(_) | TemplateError::Render(_) => {
                            ApiError::internal(e.to_string())
                        }
                    })?;
                let digest = prompt_digest(text.as_bytes(), &req.params.stop);
                // The template wrote the control tokens, so special-token text is parsed here.
                (engine.tokenize(&text, true), "messages", digest)
            }
            PromptInput::Text(text) => (
                engine.tokenize(text, false),
                "prompt",
                prompt_digest(text.as_bytes(), &req.params.stop),
            ),
            PromptInput::Tokens(ids) => {
                // Checked against the vocabulary before the monitor read them.
                let bytes: Vec<u8> = ids.iter().flat_map(|t| t.to_le_bytes()).collect();
                let digest = prompt_digest(&bytes, &req.params.stop);
                (ids.clone(), "prompt", digest)
            }
        };
        let context = engine.info().context_length;
        let mut params = req.params.clone();
        params.grammar = req.tools.as_ref().and_then(|t| t.grammar());
        params.max_tokens = match req.max_tokens {
            Some(m) => m,
            // No limit given: whatever the context window leaves, never a truncated prompt.
            None => context
                .saturating_sub(prompt.len().min(u32::MAX as usize) as u32)
                .max(1),
        };
        let prompt_tokens = prompt.len() as u32;
        // Reserve what it may use (never more than the context leaves) before it runs.
        let most = params.max_tokens.min(context.saturating_sub(prompt_tokens));
        let cost = Cost {
            prompt_sha256: digest,
            prompt_tokens: u64::from(prompt_tokens),
            most: u64::from(most),
        };
        Ok((
            cost,
            EngineWork {
                prompt,
                params,
                param,
                prompt_tokens,
            },
        ))
    }

    /// An upstream route's request: admitted against the first deployment that may take it,
    /// then sent to the deployments in order (falling back only to those the monitor allows
    /// it on). Waits for the first output, so an upstream that fails before answering is an
    /// HTTP error, not a broken stream.
    fn start_upstream(
        &self,
        caller: &Caller<'_>,
        req: Prepared,
        route: &crate::UpstreamRoute,
    ) -> Result<Generation, Refusal> {
        let PromptInput::Chat(messages) = &req.input else {
            return Err(ApiError::bad_request(
                format!("'{}' is served by an external deployment: only /v1/chat/completions (and the Bedrock routes) reach it", route.name),
                Some("model"),
            )
            .into());
        };
        // The monitor reads everything the deployment will.
        let all = highside_openai::client_texts(highside_openai::Work::Generate(&req), &|_| {
            String::new()
        });
        let texts: Vec<&str> = all.iter().map(AsRef::as_ref).collect();
        let ticket = self.admit(
            caller,
            Target::Route(route),
            req.declared_label.as_deref(),
            &texts,
            |candidates| {
                // Every deployment is told the most it may generate: what was reserved.
                let window = candidates
                    .iter()
                    .map(|d| d.settings().context_length)
                    .max()
                    .unwrap_or(0);
                let most = req.max_tokens.unwrap_or(window);
                let upstream = upstream_request(&req, messages, most);
                // The hash covers the conversation as an OpenAI-protocol deployment receives
                // it (and the tools, when offered).
                let sent = highside_providers::openai::body(&route.name, &upstream);
                let hashed = match (sent.get("tools"), sent.get("stop")) {
                    (None, None) => sent["messages"].clone(),
                    (tools, stop) => {
                        let mut h = serde_json::json!({"messages": sent["messages"]});
                        if let Some(t) = tools {
                            h["tools"] = t.clone();
                        }
                        if let Some(s) = stop {
                            h["stop"] = s.clone();
                        }
                        h
                    }
                };
                let hashed = hashed.to_string();
                // Without the upstream's tokenizer, reserve an upper bound: a token is at
                // least one byte of what is sent (JSON structure included), plus a few
                // template tokens per message and, with tools, the instructions a provider
                // adds for them.
                let prompt_bound: u64 = hashed.len() as u64
                    + 8 * upstream.messages.len() as u64
                    + if upstream.tools.is_empty() {
                        0
                    } else {
                        TOOL_PROMPT_ALLOWANCE
                    };
                let cost = Cost {
                    prompt_sha256: sha256_hex(hashed.as_bytes()),
                    prompt_tokens: prompt_bound,
                    most: u64::from(most),
                };
                Ok((cost, upstream))
            },
        )?;
        let prompt_bound = ticket.audit.prompt_tokens;
        let (upstream, mut ticket) = ticket.split();
        let mut events = crate::upstream::spawn(
            std::mem::take(&mut ticket.candidates),
            route.attempts,
            upstream,
        );
        // Block this (blocking) thread until the first output: a failure before any output
        // is answered with its own status. Every deployment tried is announced before it.
        let mut attempted = Vec::new();
        let first = loop {
            match events.blocking_recv() {
                Some(Event::Attempt(name)) => attempted.push(name),
                Some(Event::Failed(why)) => {
                    ticket.audit.deployments = Some(attempted);
                    return Err(crate::upstream::error(why).into());
                }
                None => {
                    ticket.audit.deployments = Some(attempted);
                    let why = "the upstream request ended without an answer";
                    return Err(crate::upstream::error(highside_engine::Failure::new(why)).into());
                }
                Some(e) => break e,
            }
        };
        ticket.audit.deployments = Some(attempted);
        ticket.handed_over();
        let events = crate::output::Output::scanned(
            events,
            Arc::clone(self.monitor.detector()),
            ticket.label.clone(),
        )
        .with_first(first);
        Ok(Generation {
            model: req.model,
            events,
            prompt_tokens: prompt_bound.min(u64::from(u32::MAX)) as u32,
            stream: req.stream,
            include_usage: req.include_usage,
            label: ticket.banner,
            banner: req.banner,
            pii: ticket.pii,
            audit: ticket.audit,
            rate_headers: ticket.rate_headers,
            tools: req
                .tools
                .map(|_| highside_openai::tools::CallSource::Upstream),
        })
    }

    /// An embedding request, admitted up to the encoder (inputs longer than the model takes
    /// are a 400, never truncated) or to a route's deployments. The caller runs the work and
    /// finishes the record.
    pub fn start_embedding(
        &self,
        caller: &Caller<'_>,
        req: &highside_openai::embeddings::PreparedEmbedding,
    ) -> Result<EmbeddingStart, Refusal> {
        let local = self.registry.embedding(&req.model);
        let route = match local {
            Some(_) => None,
            None => match self.registry.route(&req.model) {
                Some(route) => Some(route),
                None => return Err(ApiError::model_not_found(&req.model).into()),
            },
        };
        match (local, req.dimensions) {
            (Some(model), Some(d)) if d as usize != model.embedder.info().dimensions => {
                return Err(ApiError::bad_request(
                    format!(
                        "this model's embeddings have {} dimensions; it cannot produce {d}",
                        model.embedder.info().dimensions
                    ),
                    Some("dimensions"),
                )
                .into());
            }
            (None, Some(_)) => {
                return Err(ApiError::bad_request(
                    format!(
                        "'dimensions' is not passed to external deployments ('{}' is one)",
                        req.model
                    ),
                    Some("dimensions"),
                )
                .into());
            }
            _ => {}
        }
        let all =
            highside_openai::client_texts(highside_openai::Work::Embed(req), &|_| String::new());
        let texts: Vec<&str> = all.iter().map(AsRef::as_ref).collect();
        let target = match (local, route) {
            (Some(model), _) => Target::Local {
                name: &model.name,
                accreditation: model.accreditation(),
            },
            (None, Some(route)) => Target::Route(route),
            (None, None) => unreachable!("resolved above"),
        };
        let digest = sha256_hex(
            serde_json::to_string(&req.inputs)
                .unwrap_or_default()
                .as_bytes(),
        );
        let ticket = self.admit(
            caller,
            target,
            req.declared_label.as_deref(),
            &texts,
            |_| match local {
                Some(model) => {
                    let ids = model.embedder.tokenize(&req.inputs).map_err(|e| match e {
                        highside_embed::EmbedError::TooLong { index, .. }
                        | highside_embed::EmbedError::Empty(index) => ApiError {
                            code: Some("context_length_exceeded"),
                            ..ApiError::bad_request(e.to_string(), Some(&format!("input[{index}]")))
                        },
                        e => ApiError::internal(e.to_string()),
                    })?;
                    let tokens: u64 = ids.iter().map(|i| i.len() as u64).sum();
                    let cost = Cost {
                        prompt_sha256: digest,
                        prompt_tokens: tokens,
                        most: 0,
                    };
                    Ok((cost, Some(ids)))
                }
                // Without the upstream's tokenizer, an upper bound: bytes, plus 2 per input.
                None => {
                    let bound: u64 = req.inputs.iter().map(|t| t.len() as u64 + 2).sum();
                    let cost = Cost {
                        prompt_sha256: digest,
                        prompt_tokens: bound,
                        most: 0,
                    };
                    Ok((cost, None))
                }
            },
        )?;
        let (ids, mut ticket) = ticket.split();
        let work = match (ids, route) {
            (Some(ids), _) => EmbeddingWork::Local(ids),
            (None, Some(route)) => EmbeddingWork::Upstream {
                candidates: std::mem::take(&mut ticket.candidates),
                attempts: route.attempts,
            },
            (None, None) => unreachable!("local work always has ids"),
        };
        // The handler runs it; an error there is recorded as one (it sets `Error` back).
        ticket.handed_over();
        Ok(EmbeddingStart {
            work,
            tokens: ticket.audit.prompt_tokens,
            label: ticket.banner,
            pii: ticket.pii,
            audit: ticket.audit,
            rate_headers: ticket.rate_headers,
        })
    }
}

#[cfg(test)]
mod enumeration {
    //! Every client string a backend receives is one the monitor reads: a request with a
    //! distinct canary in every field (built field by field, so a new field of `Prepared`,
    //! `Message`, `SamplingParams` or `ToolDef` does not compile here until it gets one) is
    //! put in the shape each backend receives (an OpenAI-protocol deployment's body, an
    //! Anthropic deployment's body, the embedded engine's rendered prompt and stop strings),
    //! and every canary found there must be among `client_texts`.

    use std::collections::BTreeSet;

    use highside_engine::SamplingParams;
    use highside_inference::{Message, ToolCall as MessageToolCall};
    use highside_inference::{ToolChoice, ToolDef};
    use highside_openai::tools::Tools;
    use highside_openai::{client_texts, Prepared, PromptInput, Work};
    use highside_template::ChatTemplate;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// Every `CANARY-NN` in `text`.
    fn canaries(text: &str, out: &mut BTreeSet<String>) {
        for (i, _) in text.match_indices("CANARY-") {
            if let Some(n) = text
                .get(i + 7..i + 9)
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            {
                out.insert(format!("CANARY-{n}"));
            }
        }
    }

    fn request() -> Prepared {
        Prepared {
            model: "m".into(),
            input: PromptInput::Chat(vec![
                Message {
                    role: "system".into(),
                    content: "CANARY-01".into(),
                    tool_calls: vec![],
                    tool_call_id: None,
                },
                Message {
                    role: "assistant".into(),
                    content: "CANARY-02".into(),
                    tool_calls: vec![MessageToolCall {
                        id: "CANARY-03".into(),
                        name: "CANARY-04".into(),
                        arguments: r#"{"CANARY-05": "CANARY-06"}"#.into(),
                    }],
                    tool_call_id: None,
                },
                Message {
                    role: "tool".into(),
                    content: r#"{"doc": "CANARY-07"}"#.into(),
                    tool_calls: vec![],
                    tool_call_id: Some("CANARY-08".into()),
                },
                Message {
                    role: "user".into(),
                    content: "CANARY-09".into(),
                    tool_calls: vec![],
                    tool_call_id: None,
                },
            ]),
            params: SamplingParams {
                temperature: 0.0,
                top_p: 1.0,
                top_k: 0,
                min_p: 0.0,
                seed: None,
                presence_penalty: 0.0,
                frequency_penalty: 0.0,
                stop: vec!["CANARY-10".into()],
                max_tokens: 5,
                grammar: None,
            },
            max_tokens: Some(5),
            stream: false,
            include_usage: false,
            declared_label: None,
            banner: false,
            tools: Some(Tools {
                defs: vec![ToolDef {
                    name: "CANARY-11".into(),
                    description: "CANARY-12".into(),
                    parameters: serde_json::json!({"type": "object", "properties": {"CANARY-13": {"type": "string", "description": "CANARY-14", "enum": ["CANARY-15"]}}}),
                }],
                choice: ToolChoice::Named("CANARY-11".into()),
                parallel: None,
            }),
        }
    }

    #[test]
    fn every_client_string_a_backend_receives_is_enumerated() {
        let req = request();
        let mut enumerated = BTreeSet::new();
        for t in client_texts(Work::Generate(&req), &|_| String::new()) {
            canaries(&t, &mut enumerated);
        }
        let PromptInput::Chat(messages) = &req.input else {
            unreachable!()
        };
        let mut received = BTreeSet::new();
        // External deployments, in both protocols.
        let up = super::upstream_request(&req, messages, 5);
        canaries(
            &highside_providers::openai::body("up", &up).to_string(),
            &mut received,
        );
        canaries(
            &highside_providers::anthropic::body("up", &up, 5)
                .unwrap()
                .to_string(),
            &mut received,
        );
        // The embedded engine: the rendered prompt (with and without template tool support),
        // its stop strings and the forced-call grammar.
        let template = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
        let tools = req.tools.as_ref().filter(|t| t.callable());
        for native in [false, true] {
            let rendered = crate::tools::messages(messages, tools, native);
            let listed = tools.filter(|_| native).map(|t| t.template_value());
            let text = template
                .render_with_tools(&rendered, true, listed.as_ref())
                .unwrap();
            canaries(&text, &mut received);
        }
        for s in &req.params.stop {
            canaries(s, &mut received);
        }
        if let Some(g) = req.tools.as_ref().and_then(Tools::grammar) {
            canaries(&g, &mut received);
        }
        let missed: Vec<_> = received.difference(&enumerated).collect();
        assert!(
            missed.is_empty(),
            "reach a backend unread by the monitor: {missed:?}"
        );
        // The canaries do reach the backends, so the check above means something.
        assert_eq!(received.len(), 15, "{received:?}");
    }

    #[test]
    fn a_marking_in_any_field_raises_the_request_label() {
        let e = highside_label::Encodings::builtin();
        let d = highside_label::Detector::new(&e);
        let base = request();
        let texts = |r: &Prepared| -> Option<highside_label::Label> {
            let all = client_texts(Work::Generate(r), &|_| String::new());
            d.label_of(all.iter().map(AsRef::as_ref)).unwrap()
        };
        assert_eq!(texts(&base), None);
        let mark = "TOP SECRET//SI";
        let mut variants: Vec<Prepared> = Vec::new();
        let mut v = base.clone();
        v.params.stop = vec![mark.into()];
        variants.push(v);
        let mut v = base.clone();
        if let PromptInput::Chat(m) = &mut v.input {
            m[2].content = serde_json::json!({"doc": format!("{mark}\n(S) body")}).to_string();
        }
        variants.push(v);
        let mut v = base.clone();
        if let PromptInput::Chat(m) = &mut v.input {
            m[1].tool_calls[0].arguments =
                serde_json::json!({"q": format!("TOP SECRET\nplan")}).to_string();
        }
        variants.push(v);
        let mut v = base.clone();
        if let Some(t) = &mut v.tools {
            t.defs[0].parameters["properties"]["CANARY-13"]["description"] =
                serde_json::json!(mark);
        }
        variants.push(v);
        for v in &variants {
            let l = texts(v).expect("a marking");
            assert_eq!(l.level(), 4, "{}", e.banner(&l));
        }
    }
}
