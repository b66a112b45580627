//! `cargo xtask diff`: what a deploy of the committed template would change, as text for a
//! terminal or Markdown for a pull-request comment.

use sagaform_deploy::change_preview::diff_pattern;
use sagaform_deploy::changeset::Format;
use sagaform_deploy::workflow::connect;
use sagaform_deploy::{Artifact, PatternEnv, Progress, Workspace, build};
use sagaform_local::LocalEnv;
use sagaform_stacks::Pattern;
use sagaform_stacks::config;

use crate::deploy::{EXIT_CODES, runtime};
use crate::workspace;

/// Output format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Aligned text for a terminal.
    Text,
    /// Markdown for a pull-request comment.
    Markdown,
}

/// Arguments of `cargo xtask diff`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// Pattern (orchestrator, sqs, stepfunctions).
    #[arg(long)]
    pattern: Pattern,
    /// Environment (a file env/<env>.toml).
    #[arg(long, default_value = "local")]
    env: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: FormatArg,
    /// Print the report as JSON instead.
    #[arg(long)]
    json: bool,
    /// Send every AWS call to this endpoint (another emulator) instead of AWS.
    #[arg(long)]
    endpoint_url: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace::root()?;
    let workspace = Workspace::new(&root);
    let env = config::load_env(&root, &args.env)?;
    let progress = Progress::stderr();
    // Packages already built fill parameters of functions the stack does not have yet; diff
    // itself never builds.
    let artifacts: Vec<Artifact> = build::functions_for(&workspace, args.pattern, &env.name)?
        .iter()
        .filter_map(|f| Artifact::from_zip_file(f, &workspace.lambda_zip(f)).ok())
        .collect();
    let report = runtime()?.block_on(async {
        let local = LocalEnv::new(workspace.clone());
        let session = connect(&env, args.endpoint_url.clone(), &local, &progress).await?;
        diff_pattern(
            &session,
            PatternEnv {
                workspace: &workspace,
                env: &env,
                pattern: args.pattern,
            },
            &artifacts,
            &progress,
        )
        .await
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
    Ok(())
}
