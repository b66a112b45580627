//! Helpers shared by the stack tests: synthesizing a template, and reading its resources,
//! function environment variables, IAM statements and runbook sections.

use sagaform_stacks::cfn::iam::Statement;
use sagaform_stacks::cfn::{Expr, Properties, Template};
use sagaform_stacks::config::EnvConfig;
use sagaform_stacks::fixtures::example_env;
use sagaform_stacks::{Pattern, synthesize};

/// The template of `pattern` in `env`, which must synthesize.
pub fn template(pattern: Pattern, env: &EnvConfig) -> Template {
    synthesize(pattern, env).unwrap().template
}

/// What `pick` takes from each resource's properties, in template order (e.g. the route key of
/// every route).
pub fn picked<'t, T>(template: &'t Template, pick: impl Fn(&'t Properties) -> Option<T>) -> Vec<T> {
    template
        .resources
        .values()
        .filter_map(|r| pick(&r.properties))
        .collect()
}

/// Asserts that the runbook section under `## {heading}` (up to the next section) contains every
/// one of `expected`.
#[track_caller]
pub fn assert_runbook_section_contains(runbook_markdown: &str, heading: &str, expected: &[&str]) {
    let section = runbook_markdown
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("the runbook has no section {heading}"));
    let section = section.split("\n## ").next().unwrap();
    for text in expected {
        assert!(section.contains(text), "missing {text:?} in {section}");
    }
}

/// The type of every resource, in template order.
pub fn types(template: &Template) -> Vec<&'static str> {
    template
        .resources
        .values()
        .map(|r| r.resource_type())
        .collect()
}

/// An environment variable of a function resource.
pub fn env_var<'t>(template: &'t Template, function: &str, name: &str) -> Option<&'t Expr> {
    match &template.resources[function].properties {
        Properties::Function(f) => f.environment.variables.get(name),
        _ => panic!("{function} is not a function"),
    }
}

/// The statements of a role's inline policies.
pub fn statements<'t>(template: &'t Template, role: &str) -> Vec<&'t Statement> {
    let Properties::Role(role) = &template.resources[role].properties else {
        panic!("{role} is not a role")
    };
    role.policies
        .iter()
        .flat_map(|p| &p.policy_document.statement)
        .collect()
}

/// The statements of a role granting any action of `service`.
pub fn statements_for<'t>(template: &'t Template, role: &str, service: &str) -> Vec<&'t Statement> {
    statements(template, role)
        .into_iter()
        .filter(|s| s.action.iter().any(|a| a.service == service))
        .collect()
}

/// The actions of a statement as IAM writes them (`sqs:SendMessage`).
pub fn action_names(statement: &Statement) -> Vec<String> {
    statement.action.iter().map(ToString::to_string).collect()
}

/// Every pattern in every example env.
pub fn all_examples() -> Vec<(Pattern, EnvConfig)> {
    let mut all = Vec::new();
    for env in ["local", "staging", "prod"] {
        for pattern in Pattern::ALL {
            all.push((pattern, example_env(env)));
        }
    }
    all
}
