//! Shared set-up of the emulator tests: a fresh moto per test, a scratch copy of the checkout's
//! `env/` and `templates/`, and synthetic function packages (the lifecycle does not need real
//! binaries; building them is tested separately).

use std::path::PathBuf;
use std::sync::OnceLock;

use sagaform_deploy::{Artifact, ConnectOptions, PatternEnv, Session, Workspace, build};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::{self, EnvConfig};
use sagaform_stacks::synth::{self, Selection};
use sagaform_tools::Tools;
use sagaform_tools::moto::MotoServer;

/// The pinned tools, installed once per test binary.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| Tools::ensure().expect("installing the pinned tools into .tools/venv"))
}

/// A folder removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> ScratchDir {
        let dir =
            std::env::temp_dir().join(format!("sagaform-deploy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One test's world: its own emulator, workspace copy and session.
pub struct Fixture {
    /// Held so that the fixture's emulator and scratch folder live as long as the fixture.
    _moto: MotoServer,
    _dir: ScratchDir,
    pub workspace: Workspace,
    pub env: EnvConfig,
    pub session: Session,
}

impl Fixture {
    pub async fn new(name: &str) -> Fixture {
        let moto = MotoServer::start(tools()).expect("moto starts");
        let dir = ScratchDir::new(name);
        let workspace = Workspace::current().copy_inputs_to(&dir.0).unwrap();
        let env = config::load_env(workspace.root(), "local").unwrap();
        // The copy is synthesized afresh: these tests are about deploying, the freshness of
        // the checkout's templates is `cargo xtask synth --check`'s business.
        let all = Selection::all();
        let files = synth::generate(workspace.root(), &all).unwrap();
        synth::write(workspace.root(), &files, &all).unwrap();
        let session = Session::connect(
            &env,
            &ConnectOptions {
                endpoint_url: Some(moto.endpoint()),
            },
        )
        .await
        .expect("connects to the emulator");
        Fixture {
            _moto: moto,
            _dir: dir,
            workspace,
            env,
            session,
        }
    }

    /// What the stack commands act on for `pattern`.
    pub fn target(&self, pattern: Pattern) -> PatternEnv<'_> {
        PatternEnv {
            workspace: &self.workspace,
            env: &self.env,
            pattern,
        }
    }

    /// Synthetic packages of every function the pattern needs.
    pub fn artifacts(&self, pattern: Pattern) -> Vec<Artifact> {
        build::functions_for(&self.workspace, pattern, &self.env.name)
            .unwrap()
            .iter()
            .map(|f| {
                Artifact::from_bootstrap(f, format!("#!/bin/sh\n# fake {f}\n").as_bytes()).unwrap()
            })
            .collect()
    }

    /// Edits `env/local.toml` of the scratch copy (the config change of a test).
    pub fn edit_local_env(&mut self, from: &str, to: &str) {
        let path = self.workspace.root().join("env/local.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(from),
            "env/local.toml has no `{from}` to edit"
        );
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        self.env = config::load_env(self.workspace.root(), "local").unwrap();
    }

    /// Runs `cargo xtask synth` on the scratch copy.
    pub fn synth(&self) {
        let all = Selection::all();
        let files = synth::generate(self.workspace.root(), &all).unwrap();
        synth::write(self.workspace.root(), &files, &all).unwrap();
    }

    pub fn outputs_file(&self, pattern: Pattern) -> PathBuf {
        self.workspace.outputs_path(pattern, "local")
    }

    /// Number of events the stack has recorded: unchanged means nothing touched it.
    pub async fn event_count(&self, stack: &str) -> usize {
        self.session
            .cloudformation
            .describe_stack_events()
            .stack_name(stack)
            .send()
            .await
            .map(|e| e.stack_events().len())
            .unwrap_or(0)
    }
}
