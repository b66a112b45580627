//! Runbooks: one Markdown file per pattern and env, next to its template, with one section per
//! alarm of the stack. Each alarm's description cites `templates/<pattern>/<env>.md#<anchor>`,
//! where the anchor is the GitHub slug of the section's heading ([`heading_anchor`]); the section
//! says what the alarm means, what to look at (with the
//! `transaction_id` correlation id) and the exact commands to recover.
//!
//! The text lives in `runbook.md.hbs` (handlebars, strict mode, no HTML escaping: the output is
//! Markdown, and commands must appear exactly as written).

use std::sync::OnceLock;

use handlebars::Handlebars;
use serde::Serialize;

use crate::Pattern;
use crate::config::{EnvConfig, StoreKind};
use crate::patterns::{runbook_path, stack_name};

const TEMPLATE: &str = include_str!("runbook.md.hbs");

/// Why a runbook could not be rendered (a bug in the template or its data).
#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    /// The template does not parse.
    #[error("runbook template runbook.md.hbs does not parse: {0}")]
    Template(#[from] Box<handlebars::TemplateError>),
    /// Rendering failed (a missing field in strict mode).
    #[error("runbook template runbook.md.hbs failed to render: {0}")]
    Render(#[from] Box<handlebars::RenderError>),
}

/// The runbook section of one alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunbookSection {
    /// Anchor cited by the alarm (`dlq-not-empty`).
    pub anchor: String,
    /// Heading.
    pub title: String,
    /// Logical id of the alarm.
    pub alarm_logical_id: String,
    /// What the alarm means.
    pub meaning: String,
    /// What to look at.
    pub look_at: Vec<String>,
    /// Commands, in the order to run them.
    pub commands: Vec<String>,
}

/// Everything the runbook template needs.
#[derive(Debug, Clone, Serialize)]
pub struct Runbook {
    /// Pattern name.
    pub pattern: String,
    /// Env name.
    pub env: String,
    /// Whether the env is the local emulator.
    pub local: bool,
    /// Region.
    pub region: String,
    /// CloudFormation stack name.
    pub stack_name: String,
    /// Path of the template, relative to the workspace root.
    pub template_path: String,
    /// Path of this runbook.
    pub runbook_path: String,
    /// State store in words.
    pub store: String,
    /// `cargo xtask saga show ...` for this stack.
    pub saga_show: String,
    /// The emulator endpoint the `aws` commands of a local runbook use.
    pub local_endpoint: String,
    /// One section per alarm, in template order.
    pub sections: Vec<RunbookSection>,
    /// How to reach the state store from outside the VPC (Aurora in AWS), as commands with
    /// `# ` comment lines; empty when the store needs no tunnel.
    pub database_access: Vec<String>,
}

impl Runbook {
    /// The runbook of a stack with these alarm sections.
    pub fn new(pattern: Pattern, env: &EnvConfig, sections: Vec<RunbookSection>) -> Runbook {
        Runbook {
            pattern: pattern.name().to_owned(),
            env: env.name.clone(),
            local: env.is_local(),
            region: env.region().to_owned(),
            stack_name: stack_name(pattern, &env.name),
            template_path: format!("templates/{}/{}.yaml", pattern.name(), env.name),
            runbook_path: runbook_path(pattern, &env.name),
            store: match env.store(pattern) {
                StoreKind::DynamoDb => "DynamoDB (saga table and idempotency table)".to_owned(),
                StoreKind::Aurora if env.is_local() => "the local PostgreSQL server".to_owned(),
                StoreKind::Aurora => "Aurora PostgreSQL Serverless v2 behind RDS Proxy".to_owned(),
            },
            saga_show: format!(
                "cargo xtask saga show --pattern {} --env {} <transaction_id>",
                pattern.name(),
                env.name
            ),
            local_endpoint: crate::patterns::LOCAL_ENDPOINT_URL.to_owned(),
            sections,
            database_access: Vec::new(),
        }
    }
}

/// The anchor GitHub gives a Markdown heading: lower case, spaces to hyphens, punctuation other
/// than `-` and `_` dropped.
pub fn heading_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The runbook template, compiled once per process: a synthesis renders one runbook per pattern
/// and env, and compiling the template (pest computes a line and column for every element) cost
/// more than rendering it.
fn registry() -> Result<&'static Handlebars<'static>, RunbookError> {
    static REGISTRY: OnceLock<Handlebars<'static>> = OnceLock::new();
    if let Some(registry) = REGISTRY.get() {
        return Ok(registry);
    }
    let mut handlebars = Handlebars::new();
    handlebars.set_strict_mode(true);
    handlebars.register_escape_fn(handlebars::no_escape);
    handlebars
        .register_template_string("runbook", TEMPLATE)
        .map_err(Box::new)?;
    Ok(REGISTRY.get_or_init(|| handlebars))
}

/// Renders the runbook as Markdown (without the "generated by" header).
pub fn render(runbook: &Runbook) -> Result<String, RunbookError> {
    Ok(registry()?.render("runbook", runbook).map_err(Box::new)?)
}
