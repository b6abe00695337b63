//! The checks of a template's declarations: its variables (identifiers,
//! not reserved, declared once, defaults within bounds) and a WhatsApp
//! provider template (name, language, parameters that name declared
//! variables). Pure; every problem is a [`FieldError`] naming its field.

use std::collections::{HashMap, HashSet};

use super::{
    Channel, ProviderTemplate, VariableSpec, MAX_DEFAULT_CHARS, MAX_KEY_CHARS,
    MAX_PROVIDER_LANGUAGE_CHARS, MAX_PROVIDER_NAME_CHARS, MAX_PROVIDER_PARAMETERS, MAX_VARIABLES,
    RESERVED_KEYS,
};
use crate::domain::FieldError;

pub(super) fn check_variables(variables: &[VariableSpec]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if variables.len() > MAX_VARIABLES {
        errors.push(FieldError::new(
            "variables",
            format!("must be at most {MAX_VARIABLES} variables"),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, var) in variables.iter().enumerate() {
        let key = var.key.as_str();
        if !is_identifier(key) {
            errors.push(FieldError::new(
                format!("variables[{i}].key"),
                format!("{key:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]{{0,63}})"),
            ));
        } else if RESERVED_KEYS.contains(&key) {
            errors.push(FieldError::new(
                format!("variables[{i}].key"),
                format!("{key:?} is reserved by the template language"),
            ));
        } else if let Some(first) = seen.get(key) {
            errors.push(FieldError::new(
                format!("variables[{i}].key"),
                format!("{key:?} is already declared by variables[{first}]"),
            ));
        } else {
            seen.insert(key, i);
        }
        if let Some(default) = &var.default {
            if default.chars().count() > MAX_DEFAULT_CHARS {
                errors.push(FieldError::new(
                    format!("variables[{i}].default"),
                    format!("must be at most {MAX_DEFAULT_CHARS} characters"),
                ));
            }
        }
    }
    errors
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    key.len() <= MAX_KEY_CHARS && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn check_provider(
    provider: &ProviderTemplate,
    declared: &HashSet<&str>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let texts = [
        ("name", &provider.name, MAX_PROVIDER_NAME_CHARS),
        ("language", &provider.language, MAX_PROVIDER_LANGUAGE_CHARS),
    ];
    for (field, text, max) in texts {
        let field = format!("provider_template.{field}");
        if text.trim().is_empty() {
            errors.push(FieldError::new(field, "must not be blank"));
        } else if text.chars().count() > max {
            errors.push(FieldError::new(
                field,
                format!("must be at most {max} characters"),
            ));
        }
    }
    if provider.parameters.len() > MAX_PROVIDER_PARAMETERS {
        errors.push(FieldError::new(
            "provider_template.parameters",
            format!("must be at most {MAX_PROVIDER_PARAMETERS} parameters"),
        ));
    }
    for (i, key) in provider.parameters.iter().enumerate() {
        if !declared.contains(key.as_str()) {
            errors.push(FieldError::new(
                format!("provider_template.parameters[{i}]"),
                format!("{key:?} is not a declared variable"),
            ));
        }
    }
    errors
}

/// "an email", "an sms", "a whatsapp".
pub(super) fn with_article(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "an email",
        Channel::Sms => "an sms",
        Channel::Whatsapp => "a whatsapp",
        Channel::Slack => "a slack",
    }
}

pub(super) fn not_for_channel(field: &str, channel: Channel) -> FieldError {
    FieldError::new(
        field,
        format!("is not a part of {} template", with_article(channel)),
    )
}
