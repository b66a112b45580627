//! `cargo xtask diff`: what a deploy of the committed template would change (template diff and
//! change set against the deployed stack), or with `--base REF` the offline review of the working
//! tree against a git ref (no AWS; exit code 4 when its security table has a row), as text for a
//! terminal or Markdown for a pull-request comment.

use sagaform_deploy::change_preview::diff_pattern;
use sagaform_deploy::changeset::Format;
use sagaform_deploy::review::review;
use sagaform_deploy::workflow::connect;
use sagaform_deploy::{Artifact, EXIT_OK, Progress, build};
use sagaform_local::LocalEnv;
use sagaform_stacks::Pattern;
use sagaform_stacks::synth::Selection;

use crate::deploy::runtime;
use crate::stack_args::StackArgs;

/// Output format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Aligned text for a terminal.
    Text,
    /// Markdown for a pull-request comment.
    Markdown,
}

/// Arguments of `cargo xtask diff`. They are the stack arguments, except that `--pattern` and
/// `--env` are optional with `--base` (every stack, or those of one pattern or env).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pattern of the stack (orchestrator, sqs, stepfunctions); with --base, only this pattern.
    #[arg(long, required_unless_present = "base")]
    pattern: Option<Pattern>,
    /// Environment (a file env/<env>.toml; default local); with --base, only this env.
    #[arg(long)]
    env: Option<String>,
    /// Review offline, without AWS: the templates and runbooks the working tree synthesizes
    /// against those committed at this git ref (without a value: the merge base with main).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    base: Option<String>,
    /// Print the result as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// Send every AWS call to this endpoint (another emulator) instead of AWS.
    #[arg(long, conflicts_with = "base")]
    endpoint_url: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: FormatArg,
}

/// Runs the diff and returns the process exit code.
pub fn run(args: Args) -> anyhow::Result<i32> {
    if let Some(base) = &args.base {
        return offline(&args, base);
    }
    let stack = StackArgs {
        pattern: args
            .pattern
            .expect("clap requires --pattern without --base"),
        env: args.env.clone().unwrap_or_else(|| "local".to_owned()),
        json: args.json,
        endpoint_url: args.endpoint_url.clone(),
    };
    let stack = stack.load()?;
    let workspace = &stack.workspace;
    let progress = Progress::stderr();
    // Packages already built fill parameters of functions the stack does not have yet; diff
    // itself never builds.
    let artifacts: Vec<Artifact> = build::functions_for(workspace, stack.pattern, &stack.env.name)?
        .iter()
        .filter_map(|f| {
            Artifact::from_zip_file(f, &workspace.package_zip(f, stack.env.is_local())).ok()
        })
        .collect();
    let report = runtime()?.block_on(async {
        let local = LocalEnv::new(workspace.clone());
        let session = connect(&stack.env, args.endpoint_url.clone(), &local, &progress).await?;
        diff_pattern(&session, stack.pattern_env(), &artifacts, &progress).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let format = match args.format {
            FormatArg::Text => Format::Text,
            FormatArg::Markdown => Format::Markdown,
        };
        print!("{}", report.render(format));
    }
    Ok(EXIT_OK)
}

/// `diff --base REF`: the offline review, printed; its exit code says whether the security
/// table has a row.
fn offline(args: &Args, base: &str) -> anyhow::Result<i32> {
    let selection = Selection {
        pattern: args.pattern,
        env: args.env.clone(),
    };
    let root = crate::workspace::root()?;
    let base = (!base.is_empty()).then_some(base);
    let review = review(&root, base, &selection)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&review)?);
    } else {
        match args.format {
            FormatArg::Text => print!("{}", review.to_text()),
            FormatArg::Markdown => print!("{}", review.to_markdown()),
        }
    }
    Ok(review.exit_code())
}
