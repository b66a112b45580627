//! `cargo xtask diff`: what a deploy of the committed template would change, as text for a
//! terminal or Markdown for a pull-request comment.

use sagaform_deploy::change_preview::diff_pattern;
use sagaform_deploy::changeset::Format;
use sagaform_deploy::workflow::connect;
use sagaform_deploy::{Artifact, Progress, build};
use sagaform_local::LocalEnv;

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

/// Arguments of `cargo xtask diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    stack: StackArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: FormatArg,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let stack = args.stack.load()?;
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
        let session = connect(
            &stack.env,
            args.stack.endpoint_url.clone(),
            &local,
            &progress,
        )
        .await?;
        diff_pattern(&session, stack.pattern_env(), &artifacts, &progress).await
    })?;
    if args.stack.json {
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
