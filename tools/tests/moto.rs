//! The pinned emulator installs, starts on a free port with sagaform's configuration, and stops.

use std::time::Duration;

use sagaform_tools::{Tools, http, moto};

#[test]
fn moto_starts_configured_for_sagaform_and_stops_on_drop() {
    let tools = Tools::ensure().expect("install pinned tools");
    let server = moto::MotoServer::start(&tools).expect("start moto");
    let port = server.port();
    assert!(moto::is_running(port));

    let addr = ([127, 0, 0, 1], port).into();
    let config = http::request(
        addr,
        "GET",
        "/moto-api/config",
        None,
        Duration::from_secs(5),
    )
    .expect("read moto config");
    assert_eq!(
        config.status / 100,
        2,
        "GET /moto-api/config: {}",
        config.status
    );
    let compact: String = config.body.split_whitespace().collect();
    // moto echoes the batch and lambda sections only; the stepfunctions section is set by the
    // same request, so a configured lambda section shows the request was applied.
    assert!(
        compact.contains(r#""lambda":{"use_docker":false}"#),
        "moto was not configured: {}",
        config.body
    );

    drop(server);
    assert!(!moto::is_running(port), "moto still answers after drop");
}

#[test]
fn pinned_versions_are_the_ones_installed() {
    let tools = Tools::ensure().expect("install pinned tools");
    let out = std::process::Command::new(tools.bin("python"))
        .args(["-m", "pip", "freeze"])
        .output()
        .expect("pip freeze");
    let frozen = String::from_utf8_lossy(&out.stdout);
    for pin in ["moto==5.2.5", "cfn-lint==1.58.0", "cargo-lambda==1.9.2"] {
        assert!(
            frozen.contains(pin),
            "{pin} missing from .tools/venv:\n{frozen}"
        );
    }
}
