//! Message templates as pure validation and rendering: a channel, its
//! declared variables and the channel's parts, rendered with minijinja
//! (`{{customerName}}`, strict undefined).
//!
//! Owns: what a valid template is ([`validate`], every problem named by its
//! field path) and how values become text ([`render`], [`Compiled`]). Must
//! not: read the store, a file or the network (no includes, imports, macros
//! or loaders are compiled in), log values, or panic on any template or
//! value.
//!
//! Rules that are decisions:
//! - **Variables are declared.** A part that uses a name the template does
//!   not declare is refused when validated. For attribute and item
//!   access (`{{ order.id }}`, `{{ items[0] }}`) only the root name
//!   (`order`) must be declared; its shape is the sender's business, and a
//!   missing attribute fails the render (strict undefined) naming the field.
//!   Names a template assigns itself (`{% set %}`, loop variables) and the
//!   built-in functions `range`, `dict` and `namespace` need no declaration.
//! - **Required with a default** is allowed: the default wins, so such a
//!   variable is never reported missing. `required` matters only without a
//!   default.
//! - **Absent and null are the same.** Either takes the default; a required
//!   variable without a default is then missing; an optional one without a
//!   default renders as the empty string.
//! - **Values that are not declared are ignored**, not refused: the data of
//!   a send may serve several channels' templates (a notification's
//!   fallback), and a template sees only what it declares.
//! - **HTML escaping** applies to `body_html_template` only; subject, text
//!   and SMS bodies and WhatsApp parameters are sent as rendered.
//! - **Hostile templates** fail, they do not hang: each part's render has a
//!   fuel budget ([`RENDER_FUEL`]), a recursion limit and an output cap
//!   ([`MAX_RENDERED_BYTES`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use crate::domain::FieldError;

mod checks;
use checks::{check_provider, check_variables, not_for_channel};

/// The most variables a template declares.
pub const MAX_VARIABLES: usize = 100;
/// The longest variable default, in characters.
pub const MAX_DEFAULT_CHARS: usize = 5_000;
/// The longest `subject_template`, in characters.
pub const MAX_SUBJECT_CHARS: usize = 1_000;
/// The longest `body_html_template` or `body_text_template`, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The longest SMS `body_template`, in characters.
pub const MAX_SMS_BODY_CHARS: usize = 5_000;
/// The longest WhatsApp provider template name, in characters.
pub const MAX_PROVIDER_NAME_CHARS: usize = 512;
/// The longest WhatsApp provider template language code, in characters.
pub const MAX_PROVIDER_LANGUAGE_CHARS: usize = 32;
/// The most parameters a WhatsApp provider template takes.
pub const MAX_PROVIDER_PARAMETERS: usize = 100;
/// The most one part may render to, in bytes.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;
/// The fuel of one part's render: about one instruction, or 64 bytes of
/// data, per unit. Ample for a 256 KiB body with loops over a few hundred
/// items; a loop bomb runs out within milliseconds.
pub const RENDER_FUEL: u64 = 200_000;
/// The deepest nesting of loops and conditions while rendering.
const RECURSION_LIMIT: usize = 64;
/// The longest variable key (`[A-Za-z_][A-Za-z0-9_]{0,63}`).
const MAX_KEY_CHARS: usize = 64;
/// Names the template language keeps for itself.
const RESERVED_KEYS: [&str; 17] = [
    "true", "True", "false", "False", "none", "None", "loop", "self", "and", "or", "not", "in",
    "is", "if", "else", "caller", "super",
];

/// The channel a template belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Whatsapp,
    /// Plain text, like an SMS body.
    Slack,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Slack => "slack",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            "whatsapp" => Some(Channel::Whatsapp),
            "slack" => Some(Channel::Slack),
            _ => None,
        }
    }
}

/// One declared variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableSpec {
    pub key: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A template registered with the provider (WhatsApp): herald sends its name,
/// language and parameter values, never its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderTemplate {
    pub name: String,
    pub language: String,
    /// Variable keys, in the provider's parameter order.
    #[serde(default)]
    pub parameters: Vec<String>,
}

/// A channel's parts: e-mail has a subject and an HTML and/or text body, SMS
/// a body, WhatsApp a provider template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateParts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_html_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_template: Option<ProviderTemplate>,
    /// E-mail: an open pixel in the HTML body (opt-in).
    #[serde(default, skip_serializing_if = "is_false")]
    pub track_opens: bool,
    /// E-mail: links through herald's click redirect (opt-in).
    #[serde(default, skip_serializing_if = "is_false")]
    pub track_clicks: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a template rendered to; the parts of other channels are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub subject: Option<String>,
    pub body_html: Option<String>,
    pub body_text: Option<String>,
    /// The SMS text.
    pub body: Option<String>,
    /// WhatsApp: the provider template's parameter values, in its order.
    pub parameters: Vec<String>,
}

/// Why a render failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// Required variables without a default that were absent or null, in
    /// declaration order.
    #[error("missing required variables: {}", .0.join(", "))]
    MissingVariables(Vec<String>),
    /// A part failed to render (a missing attribute, a type error, fuel or
    /// output size exhausted).
    #[error("{field}: {reason}")]
    Template { field: String, reason: String },
    /// The template itself is not valid (see [`validate`]).
    #[error("invalid template: {}", join_errors(.0))]
    Invalid(Vec<FieldError>),
}

fn join_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A text part: its field name (also its template name) and size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextPart {
    Subject,
    BodyHtml,
    BodyText,
    Body,
}

impl TextPart {
    const ALL: [TextPart; 4] = [
        TextPart::Subject,
        TextPart::BodyHtml,
        TextPart::BodyText,
        TextPart::Body,
    ];

    fn field(self) -> &'static str {
        match self {
            TextPart::Subject => "subject_template",
            TextPart::BodyHtml => "body_html_template",
            TextPart::BodyText => "body_text_template",
            TextPart::Body => "body_template",
        }
    }

    fn source(self, parts: &TemplateParts) -> Option<&str> {
        match self {
            TextPart::Subject => parts.subject_template.as_deref(),
            TextPart::BodyHtml => parts.body_html_template.as_deref(),
            TextPart::BodyText => parts.body_text_template.as_deref(),
            TextPart::Body => parts.body_template.as_deref(),
        }
    }

    fn belongs_to(self, channel: Channel) -> bool {
        match self {
            TextPart::Subject | TextPart::BodyHtml | TextPart::BodyText => {
                channel == Channel::Email
            }
            TextPart::Body => matches!(channel, Channel::Sms | Channel::Slack),
        }
    }

    /// Why a source is too long, if it is.
    fn too_long(self, source: &str) -> Option<String> {
        match self {
            TextPart::Subject if source.chars().count() > MAX_SUBJECT_CHARS => {
                Some(format!("must be at most {MAX_SUBJECT_CHARS} characters"))
            }
            TextPart::BodyHtml | TextPart::BodyText if source.len() > MAX_BODY_BYTES => {
                Some(format!("must be at most {} KiB", MAX_BODY_BYTES / 1024))
            }
            TextPart::Body if source.chars().count() > MAX_SMS_BODY_CHARS => {
                Some(format!("must be at most {MAX_SMS_BODY_CHARS} characters"))
            }
            _ => None,
        }
    }
}

/// Checks a template: its variables, the parts its channel needs and only
/// those, each part's size and syntax, and that every variable a part uses
/// is declared. Every problem is reported, each with its field path.
pub fn validate(
    channel: Channel,
    variables: &[VariableSpec],
    parts: &TemplateParts,
) -> Result<(), Vec<FieldError>> {
    Compiled::new(channel, variables, parts).map(|_| ())
}

/// Validates, compiles and renders a template in one call. Callers that
/// render one template version many times keep a [`Compiled`] instead.
pub fn render(
    channel: Channel,
    variables: &[VariableSpec],
    parts: &TemplateParts,
    values: &serde_json::Map<String, serde_json::Value>,
) -> Result<Rendered, RenderError> {
    Compiled::new(channel, variables, parts)
        .map_err(RenderError::Invalid)?
        .render(values)
}

/// A validated template, compiled once: it owns a minijinja environment
/// holding its parts, so rendering is a context build and one VM run per
/// part. Build one per template version and keep it (it is `Send + Sync`);
/// building parses every part, rendering parses nothing.
#[derive(Debug)]
pub struct Compiled {
    env: Environment<'static>,
    variables: Vec<VariableSpec>,
    /// The text parts present, in [`TextPart::ALL`] order.
    parts: Vec<TextPart>,
    /// WhatsApp: the provider template's parameter keys, in order.
    parameters: Vec<String>,
}

impl Compiled {
    /// Validates and compiles a template; the errors are [`validate`]'s.
    pub fn new(
        channel: Channel,
        variables: &[VariableSpec],
        parts: &TemplateParts,
    ) -> Result<Compiled, Vec<FieldError>> {
        let mut errors = check_variables(variables);
        let declared: HashSet<&str> = variables.iter().map(|v| v.key.as_str()).collect();
        let mut env = new_environment();
        let globals: HashSet<String> = env.globals().map(|(name, _)| name.to_string()).collect();

        let mut present = Vec::new();
        for part in TextPart::ALL {
            let field = part.field();
            let Some(source) = part.source(parts) else {
                continue;
            };
            if !part.belongs_to(channel) {
                errors.push(not_for_channel(field, channel));
                continue;
            }
            if source.trim().is_empty() {
                errors.push(FieldError::new(field, "must not be blank"));
                continue;
            }
            if let Some(reason) = part.too_long(source) {
                errors.push(FieldError::new(field, reason));
                continue;
            }
            if let Err(err) = env.add_template_owned(field, source.to_string()) {
                errors.push(FieldError::new(field, syntax_reason(&err)));
                continue;
            }
            let Ok(template) = env.get_template(field) else {
                continue;
            };
            let used: BTreeSet<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|name| !declared.contains(name.as_str()) && !globals.contains(name))
                .collect();
            for name in used {
                errors.push(FieldError::new(
                    field,
                    format!("uses undeclared variable {name:?}"),
                ));
            }
            present.push(part);
        }

        match channel {
            Channel::Email => {
                if parts.subject_template.is_none() {
                    errors.push(FieldError::new(
                        "subject_template",
                        "is required for an email template",
                    ));
                }
                if parts.body_html_template.is_none() && parts.body_text_template.is_none() {
                    errors.push(FieldError::new(
                        "body_html_template",
                        "an email template needs body_html_template or body_text_template",
                    ));
                }
            }
            Channel::Sms | Channel::Slack => {
                if parts.body_template.is_none() {
                    errors.push(FieldError::new(
                        "body_template",
                        format!("is required for {} template", checks::with_article(channel)),
                    ));
                }
            }
            Channel::Whatsapp => {}
        }

        if channel != Channel::Email {
            for (on, field) in [
                (parts.track_opens, "track_opens"),
                (parts.track_clicks, "track_clicks"),
            ] {
                if on {
                    errors.push(not_for_channel(field, channel));
                }
            }
        }
        let mut parameters = Vec::new();
        match (&parts.provider_template, channel) {
            (Some(provider), Channel::Whatsapp) => {
                errors.extend(check_provider(provider, &declared));
                parameters = provider.parameters.clone();
            }
            (Some(_), _) => errors.push(not_for_channel("provider_template", channel)),
            (None, Channel::Whatsapp) => errors.push(FieldError::new(
                "provider_template",
                "is required for a whatsapp template",
            )),
            (None, _) => {}
        }

        if errors.is_empty() {
            Ok(Compiled {
                env,
                variables: variables.to_vec(),
                parts: present,
                parameters,
            })
        } else {
            Err(errors)
        }
    }

    /// Renders every part with `values`: defaults fill absent or null keys,
    /// undeclared keys are ignored, and every missing required key is
    /// listed before anything renders.
    pub fn render(
        &self,
        values: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Rendered, RenderError> {
        let mut missing = Vec::new();
        let mut context: BTreeMap<String, Value> = BTreeMap::new();
        for var in &self.variables {
            let value = match values.get(&var.key) {
                Some(v) if !v.is_null() => Value::from(Serde(v)),
                _ => match &var.default {
                    Some(default) => Value::from(default.as_str()),
                    None if var.required => {
                        missing.push(var.key.clone());
                        continue;
                    }
                    None => Value::from(""),
                },
            };
            context.insert(var.key.clone(), value);
        }
        if !missing.is_empty() {
            return Err(RenderError::MissingVariables(missing));
        }

        let context = Value::from(context);
        let mut rendered = Rendered::default();
        for &part in &self.parts {
            let text = self.render_part(part, &context)?;
            match part {
                TextPart::Subject => rendered.subject = Some(text),
                TextPart::BodyHtml => rendered.body_html = Some(text),
                TextPart::BodyText => rendered.body_text = Some(text),
                TextPart::Body => rendered.body = Some(text),
            }
        }
        rendered.parameters = self
            .parameters
            .iter()
            .map(|key| parameter_text(context.get_attr(key).unwrap_or_default()))
            .collect();
        Ok(rendered)
    }

    fn render_part(&self, part: TextPart, context: &Value) -> Result<String, RenderError> {
        let field = part.field();
        let template = self
            .env
            .get_template(field)
            .map_err(|err| template_error(field, describe(&err)))?;
        let mut out = CappedWriter::default();
        match template.render_captured_to(context.clone(), &mut out) {
            Ok(_) if !out.overflowed => String::from_utf8(out.buf)
                .map_err(|_| template_error(field, "rendered text is not UTF-8".into())),
            Ok(_) => Err(overflow_error(field)),
            Err(_) if out.overflowed => Err(overflow_error(field)),
            Err(err) => Err(template_error(field, describe(&err))),
        }
    }
}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(RENDER_FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_auto_escape_callback(|name| {
        if name == TextPart::BodyHtml.field() {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // `debug()` prints the whole context: nothing a message should carry.
    env.remove_global("debug");
    env
}

/// A compile error as a field's reason: what is wrong and on which line.
fn syntax_reason(err: &minijinja::Error) -> String {
    let detail = err.detail().unwrap_or("invalid template");
    match err.line() {
        Some(line) => format!("syntax error on line {line}: {detail}"),
        None => format!("syntax error: {detail}"),
    }
}

/// A render error as a field's reason: its kind, detail and line.
fn describe(err: &minijinja::Error) -> String {
    let mut reason = err.kind().to_string();
    if let Some(detail) = err.detail() {
        reason.push_str(": ");
        reason.push_str(detail);
    }
    if let Some(line) = err.line() {
        reason.push_str(&format!(" (line {line})"));
    }
    reason
}

fn template_error(field: &str, reason: String) -> RenderError {
    RenderError::Template {
        field: field.to_string(),
        reason,
    }
}

fn overflow_error(field: &str) -> RenderError {
    template_error(
        field,
        format!("rendered text exceeds {} KiB", MAX_RENDERED_BYTES / 1024),
    )
}

/// A parameter's text: a string as it is, anything else as the template
/// language prints it.
fn parameter_text(value: Value) -> String {
    match value.as_str() {
        Some(s) => s.to_string(),
        None => value.to_string(),
    }
}

/// Collects rendered output and refuses to grow past [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct CappedWriter {
    buf: Vec<u8>,
    overflowed: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("rendered text is too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::{json, Map};

    use super::*;

    fn var(key: &str, required: bool, default: Option<&str>) -> VariableSpec {
        VariableSpec {
            key: key.to_string(),
            required,
            default: default.map(str::to_string),
        }
    }

    fn values(v: serde_json::Value) -> Map<String, serde_json::Value> {
        match v {
            serde_json::Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn email(subject: &str, html: Option<&str>, text: Option<&str>) -> TemplateParts {
        TemplateParts {
            subject_template: Some(subject.to_string()),
            body_html_template: html.map(str::to_string),
            body_text_template: text.map(str::to_string),
            ..TemplateParts::default()
        }
    }

    fn sms(body: &str) -> TemplateParts {
        TemplateParts {
            body_template: Some(body.to_string()),
            ..TemplateParts::default()
        }
    }

    fn whatsapp(parameters: &[&str]) -> TemplateParts {
        TemplateParts {
            provider_template: Some(ProviderTemplate {
                name: "order_update".into(),
                language: "en_US".into(),
                parameters: parameters.iter().map(|p| p.to_string()).collect(),
            }),
            ..TemplateParts::default()
        }
    }

    fn errors_of(channel: Channel, vars: &[VariableSpec], parts: &TemplateParts) -> Vec<String> {
        match validate(channel, vars, parts) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// A name, a template, and the errors it must get (as displayed).
    type ValidationCase<'a> = (
        &'a str,
        Channel,
        Vec<VariableSpec>,
        TemplateParts,
        Vec<&'a str>,
    );

    #[test]
    fn validation_names_every_problem_by_its_field() {
        let name = || vec![var("name", true, None)];
        let long_key_error = format!(
            "variables[4].key: {:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]{{0,63}})",
            "x".repeat(65)
        );
        let cases: Vec<ValidationCase> = vec![
            (
                "a valid email",
                Channel::Email,
                name(),
                email("Hi {{name}}", Some("<p>{{ name }}</p>"), None),
                vec![],
            ),
            (
                "undeclared variable in the html body",
                Channel::Email,
                name(),
                email("Hi {{name}}", Some("<p>{{customerName}}</p>"), None),
                vec![r#"body_html_template: uses undeclared variable "customerName""#],
            ),
            (
                "undeclared variables listed per field, sorted",
                Channel::Email,
                vec![],
                email("{{ b }}{{ a }}", None, Some("{{ a }}")),
                vec![
                    r#"subject_template: uses undeclared variable "a""#,
                    r#"subject_template: uses undeclared variable "b""#,
                    r#"body_text_template: uses undeclared variable "a""#,
                ],
            ),
            (
                "nested access needs only the root declared",
                Channel::Sms,
                vec![var("order", true, None)],
                sms("Order {{ order.id }} of {{ order['total'] }}"),
                vec![],
            ),
            (
                "nested access with an undeclared root",
                Channel::Sms,
                name(),
                sms("Order {{ order.id }}"),
                vec![r#"body_template: uses undeclared variable "order""#],
            ),
            (
                "assigned names, loop variables and builtins need no declaration",
                Channel::Sms,
                vec![var("items", true, None)],
                sms("{% set n = 2 %}{% for i in items %}{{ loop.index }}{{ i }}{% endfor %}{{ range(n)|list }}{{ dict(a=1) }}{{ namespace() }}"),
                vec![],
            ),
            (
                "debug() is not a builtin here",
                Channel::Sms,
                vec![],
                sms("{{ debug() }}"),
                vec![r#"body_template: uses undeclared variable "debug""#],
            ),
            (
                "bad, reserved and duplicate keys",
                Channel::Sms,
                vec![
                    var("name", false, None),
                    var("1st", false, None),
                    var("name", false, None),
                    var("none", false, None),
                    var(&"x".repeat(65), false, None),
                    var("", false, None),
                ],
                sms("hi"),
                vec![
                    r#"variables[1].key: "1st" is not an identifier ([A-Za-z_][A-Za-z0-9_]{0,63})"#,
                    r#"variables[2].key: "name" is already declared by variables[0]"#,
                    r#"variables[3].key: "none" is reserved by the template language"#,
                    &long_key_error,
                    r#"variables[5].key: "" is not an identifier ([A-Za-z_][A-Za-z0-9_]{0,63})"#,
                ],
            ),
            (
                "a required variable with a default is fine",
                Channel::Sms,
                vec![var("name", true, Some("there"))],
                sms("Hi {{ name }}"),
                vec![],
            ),
            (
                "email without subject or body",
                Channel::Email,
                vec![],
                TemplateParts::default(),
                vec![
                    "subject_template: is required for an email template",
                    "body_html_template: an email template needs body_html_template or body_text_template",
                ],
            ),
            (
                "sms without body",
                Channel::Sms,
                vec![],
                TemplateParts::default(),
                vec!["body_template: is required for an sms template"],
            ),
            (
                "whatsapp without provider template",
                Channel::Whatsapp,
                vec![],
                TemplateParts::default(),
                vec!["provider_template: is required for a whatsapp template"],
            ),
            (
                "parts of other channels are refused by name",
                Channel::Sms,
                vec![],
                TemplateParts {
                    subject_template: Some("s".into()),
                    body_html_template: Some("h".into()),
                    body_text_template: Some("t".into()),
                    body_template: Some("b".into()),
                    provider_template: whatsapp(&[]).provider_template,
                    track_opens: true,
                    track_clicks: false,
                },
                vec![
                    "subject_template: is not a part of an sms template",
                    "body_html_template: is not a part of an sms template",
                    "body_text_template: is not a part of an sms template",
                    "track_opens: is not a part of an sms template",
                    "provider_template: is not a part of an sms template",
                ],
            ),
            (
                "email parts on whatsapp are refused",
                Channel::Whatsapp,
                vec![],
                TemplateParts {
                    body_template: Some("b".into()),
                    ..whatsapp(&[])
                },
                vec!["body_template: is not a part of a whatsapp template"],
            ),
            (
                "whatsapp parameters must be declared, name and language set",
                Channel::Whatsapp,
                vec![var("a", true, None)],
                TemplateParts {
                    provider_template: Some(ProviderTemplate {
                        name: " ".into(),
                        language: String::new(),
                        parameters: vec!["a".into(), "b".into()],
                    }),
                    ..TemplateParts::default()
                },
                vec![
                    "provider_template.name: must not be blank",
                    "provider_template.language: must not be blank",
                    r#"provider_template.parameters[1]: "b" is not a declared variable"#,
                ],
            ),
            (
                "a blank part is refused",
                Channel::Email,
                vec![],
                email("  ", None, Some("text")),
                vec!["subject_template: must not be blank"],
            ),
            (
                "oversized parts are refused",
                Channel::Email,
                vec![],
                email(
                    &"s".repeat(MAX_SUBJECT_CHARS + 1),
                    Some(&"h".repeat(MAX_BODY_BYTES + 1)),
                    Some(&"t".repeat(MAX_BODY_BYTES)),
                ),
                vec![
                    "subject_template: must be at most 1000 characters",
                    "body_html_template: must be at most 256 KiB",
                ],
            ),
            (
                "an oversized sms body is refused",
                Channel::Sms,
                vec![],
                sms(&"é".repeat(MAX_SMS_BODY_CHARS + 1)),
                vec!["body_template: must be at most 5000 characters"],
            ),
        ];
        for (name, channel, vars, parts, expected) in cases {
            assert_eq!(errors_of(channel, &vars, &parts), expected, "{name}");
        }
    }

    #[test]
    fn a_syntax_error_names_the_field_and_the_line() {
        let vars = vec![var("name", true, None)];
        let cases = [
            ("line 1", "Hi {{ name", "line 1"),
            ("line 3", "Hi\nthere\n{% if name %}x", "line 3"),
            ("line 2 in a block", "ok\n{% for %}{% endfor %}", "line 2"),
        ];
        for (case, body, line) in cases {
            let errors = validate(Channel::Sms, &vars, &sms(body))
                .err()
                .unwrap_or_default();
            assert_eq!(errors.len(), 1, "{case}: {errors:?}");
            assert_eq!(errors[0].field, "body_template", "{case}");
            assert!(
                errors[0]
                    .reason
                    .starts_with(&format!("syntax error on {line}:")),
                "{case}: {}",
                errors[0].reason
            );
        }
    }

    #[test]
    fn every_missing_required_variable_is_listed_in_declaration_order() {
        let vars = vec![
            var("zeta", true, None),
            var("alpha", true, None),
            var("given", true, None),
            var("nulled", true, None),
            var("optional", false, None),
            var("defaulted", true, Some("d")),
        ];
        let parts = sms("{{zeta}}{{alpha}}{{given}}{{nulled}}{{optional}}{{defaulted}}");
        let result = render(
            Channel::Sms,
            &vars,
            &parts,
            &values(json!({"given": "g", "nulled": null})),
        );
        assert_eq!(
            result,
            Err(RenderError::MissingVariables(vec![
                "zeta".into(),
                "alpha".into(),
                "nulled".into()
            ]))
        );
    }

    #[test]
    fn defaults_fill_absent_and_null_values_and_undeclared_values_are_ignored() {
        let vars = vec![
            var("name", true, Some("there")),
            var("city", false, Some("Paris")),
            var("note", false, None),
            var("count", true, None),
        ];
        let parts = sms("Hi {{name}} from {{ city }}[{{ note }}] x{{ count }}");
        let cases = [
            (json!({"count": 2}), "Hi there from Paris[] x2"),
            (
                json!({"name": null, "city": null, "count": 3}),
                "Hi there from Paris[] x3",
            ),
            (
                json!({"name": "Ann", "city": "Oslo", "note": "n", "count": 1.5}),
                "Hi Ann from Oslo[n] x1.5",
            ),
            (
                json!({"count": 1, "unknown": "ignored", "customerName": "x"}),
                "Hi there from Paris[] x1",
            ),
        ];
        for (input, expected) in cases {
            let rendered = render(Channel::Sms, &vars, &parts, &values(input.clone()));
            assert_eq!(
                rendered.map(|r| r.body),
                Ok(Some(expected.to_string())),
                "{input}"
            );
        }
    }

    #[test]
    fn html_is_escaped_in_the_html_body_only() {
        let vars = vec![var("name", true, None)];
        let parts = email(
            "Hi {{ name }}",
            Some("<p>{{ name }}</p>"),
            Some("Hi {{ name }}"),
        );
        let compiled = Compiled::new(Channel::Email, &vars, &parts).unwrap();
        let rendered = compiled
            .render(&values(json!({"name": "<b>&\"'"})))
            .unwrap();
        assert_eq!(rendered.subject.as_deref(), Some("Hi <b>&\"'"));
        assert_eq!(
            rendered.body_html.as_deref(),
            Some("<p>&lt;b&gt;&amp;&quot;&#x27;</p>")
        );
        assert_eq!(rendered.body_text.as_deref(), Some("Hi <b>&\"'"));
        assert_eq!(rendered.body, None);

        let sms_rendered = render(
            Channel::Sms,
            &vars,
            &sms("{{ name }}"),
            &values(json!({"name": "<b>&\"'"})),
        )
        .unwrap();
        assert_eq!(sms_rendered.body.as_deref(), Some("<b>&\"'"));
    }

    #[test]
    fn whatsapp_parameters_follow_the_provider_order() {
        let vars = vec![
            var("name", true, None),
            var("order", true, None),
            var("total", false, Some("0")),
            var("eta", false, None),
        ];
        let parts = whatsapp(&["order", "name", "total", "eta", "order"]);
        let rendered = render(
            Channel::Whatsapp,
            &vars,
            &parts,
            &values(json!({"name": "Ann <3", "order": 42})),
        )
        .unwrap();
        assert_eq!(rendered.parameters, vec!["42", "Ann <3", "0", "", "42"]);
        assert_eq!(rendered.body, None);
        assert_eq!(rendered.subject, None);
    }

    #[test]
    fn render_errors_name_the_field() {
        let vars = vec![var("order", true, None), var("n", true, None)];
        let cases = [
            ("{{ order.id }}", json!({"order": {}, "n": 1})),
            ("{{ order.id.x }}", json!({"order": {"id": 1}, "n": 1})),
            ("{{ n + 'a' }}", json!({"order": {}, "n": 1})),
        ];
        for (body, input) in cases {
            let result = render(Channel::Sms, &vars, &sms(body), &values(input));
            match result {
                Err(RenderError::Template { field, .. }) => assert_eq!(field, "body_template"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let ok = render(
            Channel::Sms,
            &vars,
            &sms("#{{ order.id }}"),
            &values(json!({"order": {"id": 7}, "n": 1})),
        );
        assert_eq!(ok.map(|r| r.body), Ok(Some("#7".to_string())));
    }

    #[test]
    fn hostile_templates_fail_fast() {
        let cases = [
            "{% for i in range(100000000) %}x{% endfor %}",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "{% set s = namespace(v='x') %}{% for i in range(60) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v }}",
            "{{ 'x' * 100000000 }}",
            "{{ 'x'|indent(100000000) }}",
            "{{ range(100000)|join('x' * 100000) }}",
            "{% for i in range(100000) %}{{ range(100000)|sort|list|length }}{% endfor %}",
        ];
        for body in cases {
            let started = Instant::now();
            let result = render(Channel::Sms, &[], &sms(body), &Map::new());
            assert!(
                matches!(result, Err(RenderError::Template { ref field, .. }) if field == "body_template"),
                "{body}: {result:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{body}: took {:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn fuel_exhaustion_is_reported_as_such() {
        let body =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let result = render(Channel::Sms, &[], &sms(body), &Map::new());
        match result {
            Err(RenderError::Template { reason, .. }) => {
                assert!(reason.contains("fuel"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn output_past_the_cap_is_refused() {
        let vars = vec![var("big", true, None)];
        let big = "x".repeat(MAX_RENDERED_BYTES / 2 + 1);
        let parts = email("s", None, Some("{{ big }}{{ big }}"));
        let result = render(Channel::Email, &vars, &parts, &values(json!({"big": big})));
        assert_eq!(
            result,
            Err(RenderError::Template {
                field: "body_text_template".into(),
                reason: "rendered text exceeds 1024 KiB".into(),
            })
        );
    }

    #[test]
    fn render_refuses_an_invalid_template() {
        let result = render(Channel::Sms, &[], &sms("{{ who }}"), &Map::new());
        assert_eq!(
            result,
            Err(RenderError::Invalid(vec![FieldError::new(
                "body_template",
                r#"uses undeclared variable "who""#
            )]))
        );
    }

    #[test]
    fn channels_and_parts_round_trip_through_json() {
        for channel in [Channel::Email, Channel::Sms, Channel::Whatsapp] {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
            assert_eq!(
                serde_json::to_value(channel).unwrap(),
                json!(channel.as_str())
            );
        }
        assert_eq!(Channel::parse("fax"), None);
        let parts = TemplateParts {
            subject_template: Some("s".into()),
            ..whatsapp(&["a"])
        };
        let stored = serde_json::to_value(&parts).unwrap();
        assert_eq!(
            stored,
            json!({"subject_template": "s", "provider_template": {"name": "order_update", "language": "en_US", "parameters": ["a"]}})
        );
        let back: TemplateParts = serde_json::from_value(stored).unwrap();
        assert_eq!(back, parts);
        let spec: VariableSpec = serde_json::from_value(json!({"key": "k"})).unwrap();
        assert_eq!(spec, var("k", false, None));
    }

    #[test]
    fn a_compiled_template_can_be_shared_across_tasks() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Compiled>();
    }

    #[test]
    fn a_compiled_template_renders_many_times() {
        let vars = vec![var("n", true, None)];
        let compiled = Compiled::new(Channel::Sms, &vars, &sms("#{{ n }}")).unwrap();
        for i in 0..100 {
            let rendered = compiled.render(&values(json!({ "n": i }))).unwrap();
            assert_eq!(rendered.body, Some(format!("#{i}")));
        }
    }
}
