//! The offline counselor's voice of reason: SmolLM2-135M-Instruct (GGUF, Q4_1) run by candle's
//! quantized llama on the CPU, streaming its reply token by token.
//!
//! The weights are loaded once and shared by every call; each generation clones the cheap
//! handle (the quantized tensors are reference-counted) to get its own attention cache. A
//! semaphore caps how many replies are generated at once, since each one keeps a core busy.

pub mod tokenizer;

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent::services::{BoxStream, ChatRequest, ChatRole, LanguageModel, ServiceError};
use async_trait::async_trait;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;
use tokio::sync::{mpsc, Semaphore};

use self::tokenizer::{StreamDecoder, TokenId, Tokenizer};

const SERVICE: &str = "smollm2";

/// How the model's weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// 32-bit floats (about 540 MB): reads prompts several times faster, which is most of the
    /// time to the first token, at some cost in generation speed.
    Float32,
    /// 8-bit blocks (about 145 MB): generates fastest, but reads prompts a token at a time.
    Q8_0,
}

/// How the local model generates.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub weights: WeightFormat,
    /// CPU threads for the matrix kernels. One is the default: on a busy two-core machine
    /// two threads fight the audio pipeline and generation collapses.
    pub threads: usize,
    /// Replies generated at the same time; further callers wait for a turn.
    pub max_concurrent: usize,
    /// How long a caller waits for a turn before getting an error instead.
    pub queue_timeout: Duration,
    /// Longest prompt (system + history + student's turn) in tokens; older turns are dropped
    /// first. The small model loses the thread in long contexts anyway.
    pub max_prompt_tokens: usize,
    pub top_p: f64,
    pub top_k: usize,
    /// Divides the logits of recently generated tokens: the small model loops without it.
    pub repeat_penalty: f32,
    /// How many of the latest tokens the penalty looks at.
    pub repeat_window: usize,
    /// No sequence of this many tokens appears twice in a reply (0 turns the rule off).
    pub no_repeat_ngram: usize,
    /// Conversation prefixes whose attention state is kept for reuse (a few MB each).
    pub cached_prefixes: usize,
    /// Seeds the sampler; `None` draws a fresh seed per reply. Fixed seeds make replies
    /// reproducible (tests, benchmarks).
    pub seed: Option<u64>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            weights: WeightFormat::Float32,
            threads: 1,
            max_concurrent: 1,
            queue_timeout: Duration::from_secs(20),
            max_prompt_tokens: 1024,
            top_p: 0.9,
            top_k: 40,
            repeat_penalty: 1.2,
            repeat_window: 64,
            no_repeat_ngram: 4,
            cached_prefixes: 16,
            seed: None,
        }
    }
}

/// Why the model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LlmLoadError {
    #[error("cannot open the language model {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the language model {} is not a usable GGUF llama model: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
}

/// The loaded model, ready to generate. Cheap to share: wrap it in an `Arc`.
pub struct LocalLanguageModel {
    weights: Arc<ModelWeights>,
    prefixes: Arc<PrefixCache>,
    tokenizer: Arc<Tokenizer>,
    config: LlmConfig,
    turns: Arc<Semaphore>,
}

impl LocalLanguageModel {
    /// Loads the GGUF file (about 100 MB; a second or two).
    ///
    /// candle sizes its CPU thread pool once per process, from `CANDLE_NUM_THREADS`, on first
    /// use; this sets that variable from `config.threads` unless the operator already did, so
    /// load the models before anything else runs candle.
    pub fn load(gguf_path: &Path, config: LlmConfig) -> Result<Self, LlmLoadError> {
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", config.threads.max(1).to_string());
        }
        let format_error = |reason: String| LlmLoadError::Format {
            path: gguf_path.to_path_buf(),
            reason,
        };
        let file = File::open(gguf_path).map_err(|source| LlmLoadError::Open {
            path: gguf_path.to_path_buf(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let content =
            gguf_file::Content::read(&mut reader).map_err(|e| format_error(e.to_string()))?;
        let architecture = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned();
        if architecture.as_deref() != Some("llama") {
            return Err(format_error(format!(
                "expected the llama architecture, found {architecture:?}"
            )));
        }
        let tokenizer = Tokenizer::from_gguf(&content)?;
        let weights = if content
            .tensor_infos
            .values()
            .any(|info| needs_conversion(info.ggml_dtype, config.weights))
        {
            let (content, mut converted) = convert_weights(content, &mut reader, config.weights)
                .map_err(|e| format_error(e.to_string()))?;
            ModelWeights::from_gguf(content, &mut converted, &Device::Cpu)
        } else {
            ModelWeights::from_gguf(content, &mut reader, &Device::Cpu)
        }
        .map_err(|e| format_error(e.to_string()))?;
        let turns = Arc::new(Semaphore::new(config.max_concurrent.max(1)));
        let prefixes = Arc::new(PrefixCache::new(config.cached_prefixes));
        Ok(Self {
            weights: Arc::new(weights),
            prefixes,
            tokenizer: Arc::new(tokenizer),
            config,
            turns,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The ChatML prompt the model was trained on, as token ids, ending where the assistant's
    /// reply begins. Oldest turns are dropped until it fits `max_prompt_tokens`.
    pub fn prompt_tokens(&self, request: &ChatRequest) -> Result<Prompt, ServiceError> {
        build_prompt(&self.tokenizer, request, self.config.max_prompt_tokens)
    }

    fn generation(&self, prompt: Prompt, request: &ChatRequest) -> Generation {
        Generation {
            weights: self.weights.clone(),
            prefixes: self.prefixes.clone(),
            tokenizer: self.tokenizer.clone(),
            config: self.config.clone(),
            prompt,
            max_tokens: request.max_tokens as usize,
            temperature: request.temperature,
        }
    }

    /// Generates a reply on the calling thread, handing each text piece to `on_text`, which
    /// returns `false` to stop early. Returns the number of tokens generated.
    pub fn generate_blocking(
        &self,
        request: &ChatRequest,
        on_text: impl FnMut(String) -> bool,
    ) -> Result<usize, ServiceError> {
        let prompt = self.prompt_tokens(request)?;
        self.generation(prompt, request).run(on_text)
    }
}

/// Model copies that have already read some token sequence (a system prompt, a whole prompt,
/// a prompt plus its reply), most recently used first. A request whose prompt starts with one
/// of them only has to read the rest: in a conversation, that is the newest turn.
struct PrefixCache {
    entries: std::sync::Mutex<std::collections::VecDeque<(Vec<TokenId>, ModelWeights)>>,
    capacity: usize,
}

impl PrefixCache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: std::sync::Mutex::new(Default::default()),
            capacity,
        }
    }

    /// The copy that has read the longest proper prefix of `tokens`, and that prefix's length.
    fn longest_prefix_of(&self, tokens: &[TokenId]) -> Option<(ModelWeights, usize)> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (index, _) = entries
            .iter()
            .enumerate()
            .filter(|(_, (prefix, _))| prefix.len() < tokens.len() && tokens.starts_with(prefix))
            .max_by_key(|(_, (prefix, _))| prefix.len())?;
        let entry = entries.remove(index).expect("index from this deque");
        let found = (entry.1.clone(), entry.0.len());
        entries.push_front(entry);
        Some(found)
    }

    fn insert(&self, tokens: &[TokenId], model: &ModelWeights) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.retain(|(prefix, _)| prefix.as_slice() != tokens);
        entries.push_front((tokens.to_vec(), model.clone()));
        entries.truncate(self.capacity);
    }
}

/// Whether a stored tensor must be re-encoded for `format`. candle has only plain scalar
/// kernels for Q4_1 (what SmolLM2's package ships), Q5_0 and Q5_1: several times slower than
/// its SIMD ones, so those always go.
fn needs_conversion(dtype: GgmlDType, format: WeightFormat) -> bool {
    match format {
        WeightFormat::Q8_0 => matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1),
        WeightFormat::Float32 => !matches!(dtype, GgmlDType::F32 | GgmlDType::F16),
    }
}

/// Re-encodes the tensors `format` needs converted and returns an in-memory GGUF to load
/// from. Float weights are written as F16, which candle widens to F32 as it loads them, so
/// the transient copy is half the size; F16 holds 4-bit block values with room to spare.
fn convert_weights(
    content: gguf_file::Content,
    reader: &mut BufReader<File>,
    format: WeightFormat,
) -> candle_core::Result<(gguf_file::Content, Cursor<Vec<u8>>)> {
    let target = match format {
        WeightFormat::Q8_0 => GgmlDType::Q8_0,
        WeightFormat::Float32 => GgmlDType::F16,
    };
    let device = Device::Cpu;
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for (name, info) in &content.tensor_infos {
        let tensor = content.tensor(reader, name, &device)?;
        let tensor = if needs_conversion(info.ggml_dtype, format) {
            QTensor::quantize(&tensor.dequantize(&device)?, target)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors
        .iter()
        .map(|(name, tensor)| (*name, tensor))
        .collect();
    let mut buffer = Cursor::new(Vec::new());
    gguf_file::write(&mut buffer, &metadata, &tensor_refs)?;
    drop(tensors);
    buffer.set_position(0);
    let converted = gguf_file::Content::read(&mut buffer)?;
    Ok((converted, buffer))
}

/// Everything one reply needs, owned so it can move to a blocking thread.
struct Generation {
    weights: Arc<ModelWeights>,
    prefixes: Arc<PrefixCache>,
    tokenizer: Arc<Tokenizer>,
    config: LlmConfig,
    prompt: Prompt,
    max_tokens: usize,
    temperature: f32,
}

impl Generation {
    fn run(self, mut on_text: impl FnMut(String) -> bool) -> Result<usize, ServiceError> {
        let prompt = &self.prompt.tokens;
        // A private copy of the handle gets a private attention cache; the weights are shared.
        // A cached copy that already read the start of this prompt skips that part.
        let (mut model, mut fed) = self
            .prefixes
            .longest_prefix_of(prompt)
            .unwrap_or_else(|| ((*self.weights).clone(), 0));
        // The system turn is worth caching on its own: every conversation in a category starts with it.
        if fed < self.prompt.system_len {
            let system = &prompt[fed..self.prompt.system_len];
            let input = Tensor::new(system, &Device::Cpu)
                .and_then(|t| t.unsqueeze(0))
                .map_err(model_error)?;
            model.forward(&input, fed).map_err(model_error)?;
            fed = self.prompt.system_len;
            self.prefixes.insert(&prompt[..fed], &model);
        }
        let sampling = if self.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            Sampling::TopKThenTopP {
                k: self.config.top_k,
                p: self.config.top_p,
                temperature: self.temperature as f64,
            }
        };
        let seed = self.config.seed.unwrap_or_else(fresh_seed);
        let mut sampler = LogitsProcessor::from_sampling(seed, sampling);
        let mut decoder = StreamDecoder::default();
        let stops = [self.tokenizer.chat.im_end, self.tokenizer.chat.end_of_text];

        let mut context: Vec<TokenId> = prompt.clone();
        let mut input = Tensor::new(&prompt[fed..], &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(model_error)?;
        let mut generated = 0;
        let mut finished = false;
        while generated < self.max_tokens {
            let position = context.len() - input.dim(1).map_err(model_error)?;
            let logits = model
                .forward(&input, position)
                .and_then(|l| l.squeeze(0))
                .map_err(model_error)?;
            if generated == 0 {
                // The next turn's prompt starts with this one.
                self.prefixes.insert(prompt, &model);
            }
            let logits = self
                .discourage_repeats(logits, &context[prompt.len()..])
                .map_err(model_error)?;
            let next = sampler.sample(&logits).map_err(model_error)?;
            if stops.contains(&next) {
                finished = true;
                break;
            }
            generated += 1;
            context.push(next);
            if let Some(text) = decoder.push(&self.tokenizer, next) {
                if !on_text(text) {
                    break;
                }
            }
            if context.len() >= candle_transformers::models::quantized_llama::MAX_SEQ_LEN {
                break;
            }
            input = Tensor::new(&[next], &Device::Cpu)
                .and_then(|t| t.unsqueeze(0))
                .map_err(model_error)?;
        }
        if finished {
            // Every token of the finished reply has been read, so if the next request carries
            // this reply verbatim, it continues from here.
            self.prefixes.insert(&context, &model);
        }
        Ok(generated)
    }
}

impl Generation {
    /// Applies the repetition penalty to recent reply tokens, and rules out any token that
    /// would repeat an n-gram the reply already contains: the small model otherwise starts
    /// its answer over in a loop.
    fn discourage_repeats(&self, logits: Tensor, reply: &[TokenId]) -> candle_core::Result<Tensor> {
        let mut logits = logits.to_vec1::<f32>()?;
        let recent = &reply[reply.len().saturating_sub(self.config.repeat_window)..];
        if self.config.repeat_penalty != 1.0 {
            let mut seen = std::collections::HashSet::new();
            for &token in recent {
                if seen.insert(token) {
                    if let Some(logit) = logits.get_mut(token as usize) {
                        *logit = if *logit >= 0.0 {
                            *logit / self.config.repeat_penalty
                        } else {
                            *logit * self.config.repeat_penalty
                        };
                    }
                }
            }
        }
        for banned in repeated_ngram_continuations(reply, self.config.no_repeat_ngram) {
            if let Some(logit) = logits.get_mut(banned as usize) {
                *logit = f32::NEG_INFINITY;
            }
        }
        Tensor::new(logits, &Device::Cpu)
    }
}

/// Tokens that, appended to `reply`, would make its last `n` tokens a sequence it already has.
fn repeated_ngram_continuations(reply: &[TokenId], n: usize) -> Vec<TokenId> {
    if n == 0 || reply.len() < n {
        return Vec::new();
    }
    let tail = &reply[reply.len() - (n - 1)..];
    reply
        .windows(n)
        .filter(|window| &window[..n - 1] == tail)
        .map(|window| window[n - 1])
        .collect()
}

fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

fn model_error(error: candle_core::Error) -> ServiceError {
    ServiceError::Unavailable {
        service: SERVICE,
        reason: format!("model failure: {error}"),
    }
}

/// A ChatML prompt as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub tokens: Vec<TokenId>,
    /// How many leading tokens are the system turn.
    pub system_len: usize,
}

fn build_prompt(
    tokenizer: &Tokenizer,
    request: &ChatRequest,
    max_tokens: usize,
) -> Result<Prompt, ServiceError> {
    let chat = tokenizer.chat;
    let newline = tokenizer.encode("\n");
    let turn = |role: &str, content: &str| -> Vec<TokenId> {
        let mut ids = vec![chat.im_start];
        ids.extend(tokenizer.encode(&format!("{role}\n{}", content.trim())));
        ids.push(chat.im_end);
        ids.extend(&newline);
        ids
    };
    match request.messages.last() {
        Some(last) if last.role == ChatRole::User => {}
        _ => {
            return Err(ServiceError::Rejected {
                service: SERVICE,
                reason: "a chat request must end with the student's turn".into(),
            })
        }
    }
    let system = turn("system", &request.system);
    let mut reply_start = vec![chat.im_start];
    reply_start.extend(tokenizer.encode("assistant\n"));

    // Newest turns first, until the budget runs out; the student's latest turn must fit.
    let mut budget = max_tokens.saturating_sub(system.len() + reply_start.len());
    let mut kept: Vec<(ChatRole, Vec<TokenId>)> = Vec::new();
    for message in request.messages.iter().rev() {
        let role = match message.role {
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        };
        let ids = turn(role, &message.content);
        if ids.len() > budget {
            break;
        }
        budget -= ids.len();
        kept.push((message.role, ids));
    }
    if kept.is_empty() {
        return Err(ServiceError::Rejected {
            service: SERVICE,
            reason: format!("the student's turn does not fit the {max_tokens}-token prompt limit"),
        });
    }
    // A history that starts with the counselor's turn confuses the model: start with a student's.
    while kept
        .last()
        .is_some_and(|(role, _)| *role == ChatRole::Assistant)
    {
        kept.pop();
    }
    let system_len = system.len();
    let mut tokens = system;
    for (_, ids) in kept.iter().rev() {
        tokens.extend(ids);
    }
    tokens.extend(reply_start);
    Ok(Prompt { tokens, system_len })
}

#[async_trait]
impl LanguageModel for LocalLanguageModel {
    fn name(&self) -> &'static str {
        SERVICE
    }

    async fn stream_reply(
        &self,
        request: ChatRequest,
    ) -> Result<BoxStream<Result<String, ServiceError>>, ServiceError> {
        let prompt = self.prompt_tokens(&request)?;
        let permit = tokio::time::timeout(
            self.config.queue_timeout,
            self.turns.clone().acquire_owned(),
        )
        .await
        .map_err(|_| ServiceError::Timeout {
            service: SERVICE,
            after_ms: domain::millis(self.config.queue_timeout),
        })?
        .map_err(|_| ServiceError::Closed { service: SERVICE })?;
        let job = self.generation(prompt, &request);
        let (sender, mut receiver) = mpsc::channel::<Result<String, ServiceError>>(32);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // A send fails only when the stream was dropped: that is the signal to stop.
            let result = job.run(|text| sender.blocking_send(Ok(text)).is_ok());
            if let Err(error) = result {
                let _ = sender.blocking_send(Err(error));
            }
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            receiver.poll_recv(cx)
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::services::ChatMessage;

    /// A vocabulary of the three control tokens and the 256 bytes, with no merges.
    fn tokenizer() -> Tokenizer {
        let mut vocab: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        vocab.extend(
            tokenizer::byte_to_char_table()
                .iter()
                .map(|c| c.to_string()),
        );
        let mut types = vec![3, 3, 3];
        types.resize(vocab.len(), 1);
        Tokenizer::new(vocab, &[], &types).unwrap()
    }

    fn request(messages: Vec<ChatMessage>) -> ChatRequest {
        ChatRequest {
            system: "Be kind.".into(),
            messages,
            max_tokens: 10,
            temperature: 0.5,
            first_text_by: None,
        }
    }

    #[test]
    fn prompt_uses_chatml_and_ends_at_the_reply() {
        let tokenizer = tokenizer();
        let prompt =
            build_prompt(&tokenizer, &request(vec![ChatMessage::user("Hi")]), 1000).unwrap();
        assert_eq!(
            tokenizer.decode(&prompt.tokens[..prompt.system_len]),
            "system\nBe kind.\n"
        );
        let text: String = prompt
            .tokens
            .iter()
            .map(|&id| match id {
                1 => "<s>".to_string(),
                2 => "</s>".to_string(),
                _ => tokenizer.decode(&[id]),
            })
            .collect();
        assert_eq!(
            text,
            "<s>system\nBe kind.</s>\n<s>user\nHi</s>\n<s>assistant\n"
        );
    }

    #[test]
    fn a_reply_cannot_repeat_an_ngram() {
        // "1 2 3 4 1 2 3" → the 4-gram "1 2 3 4" exists, so 4 may not follow "1 2 3" again.
        assert_eq!(repeated_ngram_continuations(&[1, 2, 3, 4, 1, 2, 3], 4), [4]);
        assert_eq!(
            repeated_ngram_continuations(&[1, 2, 3, 4, 1, 2, 5], 4),
            Vec::<TokenId>::new()
        );
        assert_eq!(repeated_ngram_continuations(&[7, 7, 7], 2), [7, 7]);
        assert!(repeated_ngram_continuations(&[1, 2], 4).is_empty());
        assert!(repeated_ngram_continuations(&[1, 1, 1, 1], 0).is_empty());
    }

    #[test]
    fn long_history_drops_oldest_turns_first() {
        let tokenizer = tokenizer();
        let long = "x".repeat(50);
        let messages = vec![
            ChatMessage::user(long.clone()),
            ChatMessage::assistant(long.clone()),
            ChatMessage::user("latest"),
        ];
        let prompt = build_prompt(&tokenizer, &request(messages), 100).unwrap();
        let text = tokenizer.decode(&prompt.tokens);
        assert!(text.contains("latest"));
        assert!(
            !text.contains(&long),
            "old turns should have been dropped: {text}"
        );
    }

    #[test]
    fn request_must_end_with_the_student() {
        let tokenizer = tokenizer();
        let error = build_prompt(
            &tokenizer,
            &request(vec![ChatMessage::assistant("Hello")]),
            1000,
        )
        .unwrap_err();
        assert!(matches!(error, ServiceError::Rejected { .. }));
        let error = build_prompt(&tokenizer, &request(vec![]), 1000).unwrap_err();
        assert!(matches!(error, ServiceError::Rejected { .. }));
    }

    #[test]
    fn oversized_student_turn_is_rejected_not_truncated() {
        let tokenizer = tokenizer();
        let error = build_prompt(
            &tokenizer,
            &request(vec![ChatMessage::user("y".repeat(500))]),
            100,
        )
        .unwrap_err();
        assert!(matches!(error, ServiceError::Rejected { .. }), "{error:?}");
    }
}
