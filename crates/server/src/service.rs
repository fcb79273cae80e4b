//! The path from a validated request to an engine stream, with no HTTP types in sight.
//!
//! [`Service::start`] is the only way to reach an engine, and it asks the reference monitor
//! first: no route can submit a generation the monitor did not allow.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use highside_engine::{EngineError, Event};
use highside_identity::Principal;
use highside_monitor::{Access, Decision, Input, Monitor, PiiAction, Rule};
use highside_openai::{ApiError, Prepared, PromptInput};
use highside_template::TemplateError;

use crate::audit::{actor, sha256_hex, Auditor, CompletionAudit, Unfinished};
pub use crate::meter::Refusal;
use crate::meter::{Meter, RateHeaders};
use crate::Registry;

/// The request pipeline over the loaded models.
#[derive(Debug)]
pub struct Service {
    registry: Registry,
    monitor: Monitor,
    audit: Arc<Auditor>,
    meter: Arc<Meter>,
}

/// Who is asking, and what they declared outside the body.
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    /// The authenticated principal.
    pub principal: &'a Principal,
    /// Labels declared in `X-Highside-Label` headers, not yet parsed.
    pub header_labels: &'a [String],
    /// The request's ID, as its records and `x-request-id` name it.
    pub request_id: &'a str,
    /// The client's address.
    pub client: Option<std::net::SocketAddr>,
    /// Method and path, for the record.
    pub route: &'a str,
    /// The client's `Idempotency-Key`: a retry with the same key is charged once.
    pub idempotency_key: Option<&'a str>,
}

/// A generation that has been admitted by an engine.
#[derive(Debug)]
pub struct Generation {
    /// The model name as requested.
    pub model: String,
    /// Engine events, scanned for markings above the request's label; dropping this cancels
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

/// Where an admitted embedding request is computed.
#[derive(Debug)]
pub(crate) enum EmbeddingWork {
    /// The embedded encoder, on these token ids.
    Local(Vec<Vec<u32>>),
    /// A route's deployments, in order.
    Upstream {
        /// Deployments the monitor allows, first choice first.
        candidates: Vec<Arc<highside_providers::Deployment>>,
        /// Attempts per deployment.
        attempts: u32,
        /// Filled with each deployment tried (shared with the completion record).
        attempted: crate::upstream::Attempts,
    },
}

/// An admitted embedding request, ready for the encoder.
#[derive(Debug)]
pub(crate) struct EmbeddingStart {
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

/// The agency's PII action; a setting that does not parse blocks rather than guesses.
fn pii_action(p: &Principal) -> PiiAction {
    PiiAction::from_str(&p.pii_action).unwrap_or(PiiAction::Block)
}

/// Tokens a provider may add to a prompt when tools are offered (Anthropic documents a few
/// hundred for its tool-use system prompt).
const TOOL_PROMPT_ALLOWANCE: u64 = 1024;

/// A denial as the client sees it: 400 for a declared label that is not one of this enclave's,
/// 403 otherwise, naming the rules and never the protected content.
fn denied(d: &Decision) -> ApiError {
    let first = d.reasons.first().map(|r| r.rule);
    if first == Some(Rule::InvalidDeclaredLabel) {
        return ApiError {
            code: Some("invalid_label"),
            ..ApiError::bad_request(d.explain(), Some("highside.label"))
        };
    }
    ApiError {
        code: Some("access_denied"),
        ..ApiError::forbidden(format!("denied by the reference monitor: {}", d.explain()))
    }
}

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

    /// Asks the reference monitor and makes its decision durable in the audit log, then
    /// renders and tokenizes the prompt, fixes `max_tokens`, and queues the generation.
    /// Blocks on the audit log: call it from a blocking thread.
    pub fn start(&self, caller: &Caller<'_>, req: Prepared) -> Result<Generation, Refusal> {
        let started = Instant::now();
        let Some(model) = self.registry.get(&req.model) else {
            return match self.registry.route(&req.model) {
                Some(route) => self.start_upstream(caller, req, route, started),
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
        let decision = self.decide(caller, &req, model)?;
        let label = self.monitor.encodings().banner(&decision.label);
        let who = actor(caller.principal, caller.client);
        self.record_decision(
            caller,
            who.clone(),
            &model.name,
            model.accreditation().banner,
            &label,
            &decision,
        )?;
        if !decision.allowed {
            return Err(denied(&decision).into());
        }
        // From here every outcome, even an error, ends in exactly one completion record.
        let mut audit = CompletionAudit::new(
            Arc::clone(&self.audit),
            caller.request_id,
            who,
            &model.name,
            started,
        );
        let (prompt, param) = match &req.input {
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
                audit.prompt_sha256 = prompt_digest(text.as_bytes(), &req.params.stop);
                // The template wrote the control tokens, so special-token text is parsed here.
                (engine.tokenize(&text, true), "messages")
            }
            PromptInput::Text(text) => {
                audit.prompt_sha256 = prompt_digest(text.as_bytes(), &req.params.stop);
                (engine.tokenize(text, false), "prompt")
            }
            PromptInput::Tokens(ids) => {
                // `decide` has checked every id against the vocabulary.
                let bytes: Vec<u8> = ids.iter().flat_map(|t| t.to_le_bytes()).collect();
                audit.prompt_sha256 = prompt_digest(&bytes, &req.params.stop);
                (ids.clone(), "prompt")
            }
        };
        let context = engine.info().context_length;
        let mut params = req.params;
        params.grammar = req.tools.as_ref().and_then(|t| t.grammar());
        params.max_tokens = match req.max_tokens {
            Some(m) => m,
            // No limit given: whatever the context window leaves, never a truncated prompt.
            None => context
                .saturating_sub(prompt.len().min(u32::MAX as usize) as u32)
                .max(1),
        };
        let prompt_tokens = prompt.len() as u32;
        audit.prompt_tokens = u64::from(prompt_tokens);
        // Reserve what it may use (never more than the context leaves) before it runs.
        let most = params.max_tokens.min(context.saturating_sub(prompt_tokens));
        let rate_headers = self.admit(
            caller,
            &mut audit,
            &model.name,
            u64::from(prompt_tokens),
            u64::from(most),
        )?;
        let events = engine
            .submit(prompt, params)
            .map_err(|e| engine_error(e, param))?;
        let events = crate::output::Output::scanned(
            events,
            Arc::clone(self.monitor.detector()),
            decision.label.clone(),
            None,
        );
        audit.unfinished = Unfinished::Cancelled;
        Ok(Generation {
            model: req.model,
            events,
            prompt_tokens,
            stream: req.stream,
            include_usage: req.include_usage,
            label,
            banner: req.banner,
            pii: decision.pii,
            // From here it lives in async code (`Cancelled`): a drop there does not block.
            audit,
            rate_headers,
            tools: req
                .tools
                .filter(|t| t.callable())
                .map(highside_openai::tools::CallSource::Parsed),
        })
    }

    /// The monitor's decision on a request to an upstream route, made durable: judged against
    /// the first deployment (in weighted order) whose accreditation allows it, a denial for
    /// any other reason being final. Returns it with the request's label and the deployments
    /// it may be sent to: the chosen one, then every other the whole monitor allows it on.
    fn route_decision(
        &self,
        caller: &Caller<'_>,
        declared: Option<&str>,
        route: &crate::UpstreamRoute,
        texts: &[&str],
    ) -> Result<(Decision, String, Vec<Arc<highside_providers::Deployment>>), Refusal> {
        // The texts are read once, whichever deployments the request is judged against.
        let reading = self.read(caller, declared, texts);
        let draw = uuid::Uuid::new_v4().as_u128() as u64;
        let order = highside_providers::order(&route.targets, draw);
        let only_model = |d: &Decision| {
            !d.allowed
                && d.reasons.iter().all(|r| {
                    matches!(
                        r.rule,
                        Rule::WriteDownLevel
                            | Rule::WriteDownCompartment
                            | Rule::WriteDownReleasability
                    )
                })
        };
        // The first deployment in order whose accreditation allows the request decides; a
        // denial for any other reason (or by every deployment) is final.
        let assess = |d: &highside_providers::Deployment| {
            self.assess(caller, &route.name, &d.settings().label, &reading)
        };
        let mut decided = None;
        for (i, d) in order.iter().enumerate() {
            let decision = assess(d);
            let go_on = only_model(&decision);
            decided = Some((i, decision));
            if !go_on {
                break;
            }
        }
        let (chosen, decision) =
            decided.ok_or_else(|| ApiError::unavailable("this route has no deployments"))?;
        self.log_decision(caller, &route.name, &decision);
        let label = self.monitor.encodings().banner(&decision.label);
        let who = actor(caller.principal, caller.client);
        self.record_decision(
            caller,
            who.clone(),
            &route.name,
            order[chosen].settings().banner.clone(),
            &label,
            &decision,
        )?;
        if !decision.allowed {
            return Err(denied(&decision).into());
        }
        // Fallbacks: only deployments the whole monitor (mandatory check and policies) would
        // allow this request on, exactly as it allowed the first.
        let candidates: Vec<_> = std::iter::once(Arc::clone(&order[chosen]))
            .chain(
                order
                    .iter()
                    .enumerate()
                    .filter(|(i, d)| *i != chosen && assess(d).allowed)
                    .map(|(_, d)| Arc::clone(d)),
            )
            .collect();
        Ok((decision, label, candidates))
    }

    /// An upstream route's request: the decision against the first deployment that may take
    /// it, then the deployments in order, falling back only to those whose accreditation the
    /// mandatory check allows for this request's label. Waits for the first output, so an
    /// upstream that fails before answering is an HTTP error, not a broken stream.
    fn start_upstream(
        &self,
        caller: &Caller<'_>,
        req: Prepared,
        route: &crate::UpstreamRoute,
        started: Instant,
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
        let (decision, label, candidates) =
            self.route_decision(caller, req.declared_label.as_deref(), route, &texts)?;
        let who = actor(caller.principal, caller.client);
        let mut audit = CompletionAudit::new(
            Arc::clone(&self.audit),
            caller.request_id,
            who,
            &route.name,
            started,
        );
        // Every deployment is told the most it may generate: what was reserved.
        let window = candidates
            .iter()
            .map(|d| d.settings().context_length)
            .max()
            .unwrap_or(0);
        let most = req.max_tokens.unwrap_or(window);
        let upstream = upstream_request(&req, messages, most);
        // The hash covers the conversation as an OpenAI-protocol deployment receives it (and
        // the tools, when offered).
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
        audit.prompt_sha256 = sha256_hex(hashed.as_bytes());
        // Without the upstream's tokenizer, reserve an upper bound: a token is at least one
        // byte of what is sent (JSON structure included), plus a few template tokens per
        // message and, with tools, the instructions a provider adds for them.
        let prompt_bound: u64 = hashed.len() as u64
            + 8 * upstream.messages.len() as u64
            + if upstream.tools.is_empty() {
                0
            } else {
                TOOL_PROMPT_ALLOWANCE
            };
        let most = u64::from(most);
        audit.prompt_tokens = prompt_bound;
        let rate_headers = self.admit(caller, &mut audit, &route.name, prompt_bound, most)?;
        let calls = crate::upstream::Calls::default();
        let (events, failure, attempted) =
            crate::upstream::spawn(candidates, route.attempts, upstream, Arc::clone(&calls));
        audit.deployments = Some(attempted);
        // Block this (blocking) thread until the first output: a failure before any output
        // is answered with its own status.
        let mut events = events;
        let first = match events.blocking_recv() {
            Some(Event::Failed(why)) => return Err(crate::upstream::error(&failure, why).into()),
            None => {
                let why = "the upstream request ended without an answer".to_owned();
                return Err(crate::upstream::error(&failure, why).into());
            }
            Some(e) => e,
        };
        audit.unfinished = Unfinished::Cancelled;
        let events = crate::output::Output::scanned(
            crate::upstream::prepend(first, events),
            Arc::clone(self.monitor.detector()),
            decision.label.clone(),
            req.tools.as_ref().map(|_| Arc::clone(&calls)),
        );
        Ok(Generation {
            model: req.model,
            events,
            prompt_tokens: prompt_bound.min(u64::from(u32::MAX)) as u32,
            stream: req.stream,
            include_usage: req.include_usage,
            label,
            banner: req.banner,
            pii: decision.pii,
            audit,
            rate_headers,
            tools: req
                .tools
                .map(|_| highside_openai::tools::CallSource::Upstream(calls)),
        })
    }

    /// An embedding request up to the encoder: the monitor's decision (durable), the
    /// completion record, metering of the input tokens, and tokenization (inputs longer than
    /// the model takes are a 400, never truncated). The caller runs the encoder and finishes
    /// the record.
    pub(crate) fn start_embedding(
        &self,
        caller: &Caller<'_>,
        req: &highside_openai::embeddings::PreparedEmbedding,
    ) -> Result<EmbeddingStart, Refusal> {
        let started = Instant::now();
        let Some(model) = self.registry.embedding(&req.model) else {
            return match self.registry.route(&req.model) {
                Some(route) => self.start_embedding_upstream(caller, req, route, started),
                None => Err(ApiError::model_not_found(&req.model).into()),
            };
        };
        if let Some(d) = req.dimensions {
            if d as usize != model.embedder.info().dimensions {
                return Err(ApiError::bad_request(
                    format!(
                        "this model's embeddings have {} dimensions; it cannot produce {d}",
                        model.embedder.info().dimensions
                    ),
                    Some("dimensions"),
                )
                .into());
            }
        }
        let all =
            highside_openai::client_texts(highside_openai::Work::Embed(req), &|_| String::new());
        let texts: Vec<&str> = all.iter().map(AsRef::as_ref).collect();
        let accreditation = model.accreditation();
        let decision = self.judge(
            caller,
            req.declared_label.as_deref(),
            &model.name,
            &accreditation.label,
            &texts,
        );
        let label = self.monitor.encodings().banner(&decision.label);
        let who = actor(caller.principal, caller.client);
        self.record_decision(
            caller,
            who.clone(),
            &model.name,
            accreditation.banner,
            &label,
            &decision,
        )?;
        if !decision.allowed {
            return Err(denied(&decision).into());
        }
        let mut audit = CompletionAudit::new(
            Arc::clone(&self.audit),
            caller.request_id,
            who,
            &model.name,
            started,
        );
        audit.prompt_sha256 = sha256_hex(
            serde_json::to_string(&req.inputs)
                .unwrap_or_default()
                .as_bytes(),
        );
        let ids = model.embedder.tokenize(&req.inputs).map_err(|e| match e {
            highside_embed::EmbedError::TooLong { index, .. }
            | highside_embed::EmbedError::Empty(index) => ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::bad_request(e.to_string(), Some(&format!("input[{index}]")))
            },
            e => ApiError::internal(e.to_string()),
        })?;
        let tokens: u64 = ids.iter().map(|i| i.len() as u64).sum();
        audit.prompt_tokens = tokens;
        let rate_headers = self.admit(caller, &mut audit, &model.name, tokens, 0)?;
        audit.unfinished = Unfinished::Cancelled;
        Ok(EmbeddingStart {
            work: EmbeddingWork::Local(ids),
            tokens,
            label,
            pii: decision.pii,
            audit,
            rate_headers,
        })
    }

    /// An embedding request to an upstream route: the route's decision (durable), the
    /// completion record and a metering reservation of an upper bound of the input tokens
    /// (bytes, plus 2 per input); the handler sends it and settles what the upstream reports.
    fn start_embedding_upstream(
        &self,
        caller: &Caller<'_>,
        req: &highside_openai::embeddings::PreparedEmbedding,
        route: &crate::UpstreamRoute,
        started: Instant,
    ) -> Result<EmbeddingStart, Refusal> {
        if req.dimensions.is_some() {
            return Err(ApiError::bad_request(
                format!(
                    "'dimensions' is not passed to external deployments ('{}' is one)",
                    route.name
                ),
                Some("dimensions"),
            )
            .into());
        }
        let all =
            highside_openai::client_texts(highside_openai::Work::Embed(req), &|_| String::new());
        let texts: Vec<&str> = all.iter().map(AsRef::as_ref).collect();
        let (decision, label, candidates) =
            self.route_decision(caller, req.declared_label.as_deref(), route, &texts)?;
        let p = caller.principal;
        let mut audit = CompletionAudit::new(
            Arc::clone(&self.audit),
            caller.request_id,
            actor(p, caller.client),
            &route.name,
            started,
        );
        audit.prompt_sha256 = sha256_hex(
            serde_json::to_string(&req.inputs)
                .unwrap_or_default()
                .as_bytes(),
        );
        let bound: u64 = req.inputs.iter().map(|t| t.len() as u64 + 2).sum();
        audit.prompt_tokens = bound;
        let attempted = crate::upstream::Attempts::default();
        audit.deployments = Some(Arc::clone(&attempted));
        let rate_headers = self.admit(caller, &mut audit, &route.name, bound, 0)?;
        audit.unfinished = Unfinished::Cancelled;
        Ok(EmbeddingStart {
            work: EmbeddingWork::Upstream {
                candidates,
                attempts: route.attempts,
                attempted,
            },
            tokens: bound,
            label,
            pii: decision.pii,
            audit,
            rate_headers,
        })
    }

    /// Makes a decision record durable (for `model`, accredited `model_label`), before the
    /// request goes anywhere or its denial is answered.
    fn record_decision(
        &self,
        caller: &Caller<'_>,
        who: highside_audit::Actor,
        model: &str,
        model_label: String,
        label: &str,
        decision: &Decision,
    ) -> Result<(), ApiError> {
        let p = caller.principal;
        self.audit
            .record_blocking(highside_audit::Event::Decision {
                request_id: caller.request_id.to_owned(),
                actor: who,
                route: caller.route.to_owned(),
                model: model.to_owned(),
                clearance: p.clearance.to_string(),
                nationality: p.nationality.to_string(),
                request_label: label.to_owned(),
                model_label,
                decision: if decision.allowed { "allow" } else { "deny" }.to_owned(),
                reasons: decision
                    .reasons
                    .iter()
                    .map(|r| format!("{}: {}", r.rule, r.message))
                    .collect(),
                pii: decision.pii.iter().map(|s| (*s).to_owned()).collect(),
            })
            .map(|_| ())
    }

    /// Reserves `prompt` + `most` tokens for the request (keyed by its Idempotency-Key, scoped
    /// to agency and user, when it has one) and hands the charge to its completion record; a
    /// refusal leaves the record saying `rate_limited`.
    fn admit(
        &self,
        caller: &Caller<'_>,
        audit: &mut CompletionAudit,
        model: &str,
        prompt: u64,
        most: u64,
    ) -> Result<RateHeaders, Refusal> {
        let p = caller.principal;
        let subjects = highside_store::Subjects {
            agency: p.agency.to_string(),
            user: p.user.to_string(),
            key: p.key.as_ref().map(ToString::to_string),
        };
        let charge_id = match caller.idempotency_key {
            // Scoped to the agency and user, so nobody else's key collides with theirs.
            Some(k) => format!(
                "idem-{}",
                sha256_hex(format!("{}\n{}\n{k}", subjects.agency, subjects.user).as_bytes())
            ),
            None => caller.request_id.to_owned(),
        };
        match self.meter.admit(
            &charge_id,
            caller.idempotency_key.is_some(),
            &subjects,
            model,
            prompt,
            most,
        ) {
            Ok(a) => {
                audit.charge = Some(a.charge);
                Ok(a.headers)
            }
            Err(refused) => {
                audit.unfinished = Unfinished::RateLimited;
                Err(refused)
            }
        }
    }

    /// The monitor's decision on one request, logged either way.
    fn decide(
        &self,
        caller: &Caller<'_>,
        req: &Prepared,
        model: &crate::LoadedModel,
    ) -> Result<Decision, ApiError> {
        if let PromptInput::Tokens(ids) = &req.input {
            // More ids than the context holds is a 400 anyway: refused before they are read
            // back to text (each id may be many bytes).
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
            // Checked before anything reads them: llama.cpp aborts on an id out of range.
            let n_vocab = model.engine.info().n_vocab;
            if let Some(bad) = ids.iter().find(|&&t| t as u32 >= n_vocab) {
                return Err(ApiError::bad_request(
                    format!("token id {bad} is outside the model's vocabulary of {n_vocab}"),
                    Some("prompt"),
                ));
            }
        }
        // Token-id prompts are read back as text, so markings cannot hide in token ids.
        let detokenize = |ids: &[i32]| {
            let bytes: Vec<u8> = ids
                .iter()
                .flat_map(|&t| model.engine.token_bytes(t))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let all = highside_openai::client_texts(highside_openai::Work::Generate(req), &detokenize);
        let texts: Vec<&str> = all.iter().map(AsRef::as_ref).collect();
        let accreditation = model.accreditation();
        Ok(self.judge(
            caller,
            req.declared_label.as_deref(),
            &model.name,
            &accreditation.label,
            &texts,
        ))
    }

    /// The monitor's decision on a request's texts for a model of `accreditation`, logged
    /// either way.
    fn judge(
        &self,
        caller: &Caller<'_>,
        declared_label: Option<&str>,
        model: &str,
        accreditation: &highside_label::Label,
        texts: &[&str],
    ) -> Decision {
        let reading = self.read(caller, declared_label, texts);
        let decision = self.assess(caller, model, accreditation, &reading);
        self.log_decision(caller, model, &decision);
        decision
    }

    /// The monitor's reading of a request: its label (declared in headers and body, and
    /// detected in every client text) and its personal data. Once per request.
    fn read(
        &self,
        caller: &Caller<'_>,
        declared_label: Option<&str>,
        texts: &[&str],
    ) -> highside_monitor::Reading {
        let mut declared: Vec<&str> = caller.header_labels.iter().map(String::as_str).collect();
        if let Some(l) = declared_label {
            declared.push(l);
        }
        self.monitor
            .read(&declared, texts, pii_action(caller.principal))
    }

    /// The monitor's decision on a reading for a model of `accreditation`, neither logged nor
    /// counted (for candidates not taken).
    fn assess(
        &self,
        caller: &Caller<'_>,
        model: &str,
        accreditation: &highside_label::Label,
        reading: &highside_monitor::Reading,
    ) -> Decision {
        let p = caller.principal;
        // Operators hold every role, for policies as for everything else.
        let held = if p.is_operator() {
            highside_identity::RoleSet::all()
        } else {
            p.roles
        };
        let roles: Vec<&str> = held.iter().map(|r| r.as_str()).collect();
        let user = p.user.to_string();
        let agency = p.agency.to_string();
        self.monitor.decide_reading(
            &Input {
                access: Access {
                    user: &user,
                    user_name: &p.user_name,
                    agency: &agency,
                    roles: &roles,
                    clearance: p.clearance.label(),
                    nationality: p.nationality.as_str(),
                    model,
                    accreditation,
                },
                declared: &[],
                texts: &[],
                pii: pii_action(p),
            },
            reading,
        )
    }

    /// Logs and counts the decision a request was answered by.
    fn log_decision(&self, caller: &Caller<'_>, model: &str, decision: &Decision) {
        let p = caller.principal;
        let label = self.monitor.encodings().banner(&decision.label);
        if decision.allowed {
            tracing::info!(
                user = %p.user, agency = %p.agency, %model, %label,
                pii = ?decision.pii, "monitor: allowed"
            );
        } else {
            for r in &decision.reasons {
                metrics::counter!("highside_denials_total", "rule" => r.rule.as_str().to_owned())
                    .increment(1);
            }
            let rules: Vec<&str> = decision.reasons.iter().map(|r| r.rule.as_str()).collect();
            tracing::warn!(
                user = %p.user, agency = %p.agency, %model, %label,
                rules = ?rules, "monitor: denied"
            );
        }
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
