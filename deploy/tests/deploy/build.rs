//! Building with the pinned cargo-lambda (host target only: tests never download targets) and
//! packaging: a real build of a tiny crate passes the Amazon Linux 2023 check, runs, and two
//! builds of unchanged code give the same package hash; the zip is what Lambda expects.

use crate::support;

use std::process::Command;

use sagaform_deploy::build::{BuildRequest, build_functions, host_architecture};
use sagaform_deploy::elf::AL2023_GLIBC;
use sagaform_deploy::{Artifact, Progress, Workspace};
use support::{ScratchDir, tools};

/// Python's `zipfile.ZIP_DEFLATED`: the compression method of sagaform's packages.
const ZIP_DEFLATED: u8 = 8;

/// Reads a zip with Python's zipfile (an independent reader): entry names, Unix modes and
/// whether every CRC checks out (which inflates each entry).
fn python_reads(zip: &std::path::Path) -> String {
    let script = "import sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  assert z.testzip() is None, 'bad crc'\n\
                  for i in z.infolist():\n\
                  \x20   print(i.filename, oct(i.external_attr >> 16), i.date_time, i.compress_type, len(z.read(i)))\n";
    let out = Command::new(tools().bin("python"))
        .args(["-c", script])
        .arg(zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_zip_holds_one_executable_bootstrap_with_fixed_metadata() {
    let dir = ScratchDir::new("zip");
    let binary = b"\x7fELF pretend binary".repeat(1000);
    let artifact = Artifact::from_bootstrap("api", &binary).unwrap();
    let path = dir.0.join("api.zip");
    std::fs::write(&path, artifact.zip()).unwrap();
    assert_eq!(
        python_reads(&path).trim(),
        format!(
            "bootstrap 0o100755 (1980, 1, 1, 0, 0, 0) {ZIP_DEFLATED} {}",
            binary.len()
        )
    );
    assert!(artifact.zip().len() < binary.len() / 10);
    // The local runtime reads the package it is given exactly as Lambda would unpack it.
    assert_eq!(
        sagaform_local::zip::entry(artifact.zip(), "bootstrap", "api.zip").unwrap(),
        binary
    );
    assert_eq!(artifact.key(), format!("api/{}.zip", artifact.sha256()));
}

#[test]
fn cargo_lambda_builds_a_binary_that_runs_on_amazon_linux_2023_with_a_stable_hash() {
    let arch = host_architecture().expect("tests run on x86_64 or aarch64");
    let dir = ScratchDir::new("cargo-lambda");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-lambda");
    std::fs::create_dir_all(dir.0.join("src")).unwrap();
    std::fs::copy(fixture.join("Cargo.toml"), dir.0.join("Cargo.toml")).unwrap();
    std::fs::copy(fixture.join("src/main.rs"), dir.0.join("src/main.rs")).unwrap();
    let workspace = Workspace::new(&dir.0);
    let request = BuildRequest {
        functions: vec!["hello".to_owned()],
        architecture: arch,
        profile: "release".to_owned(),
    };
    let (progress, lines) = Progress::capture();

    let first = build_functions(&workspace, tools(), &request, &progress)
        .unwrap_or_else(|e| panic!("{e}\n{}", lines.text()));
    assert_eq!(first.len(), 1);
    let built = &first[0];
    assert!(built.report.is_static || built.report.max_glibc.is_some_and(|v| v <= AL2023_GLIBC));
    assert_eq!(built.report.al2023_problem(), None);
    assert_eq!(std::fs::read(&built.zip).unwrap(), built.artifact.zip());
    let run = Command::new(&built.binary).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "hello from the sagaform build test"
    );
    let listing = python_reads(&built.zip);
    let binary_size = std::fs::metadata(&built.binary).unwrap().len();
    assert_eq!(
        listing.trim(),
        format!("bootstrap 0o100755 (1980, 1, 1, 0, 0, 0) {ZIP_DEFLATED} {binary_size}")
    );
    assert!(built.artifact.zip().len() < binary_size as usize);

    // Unchanged code compiled again (the source rewritten, so cargo rebuilds it): the binary
    // and the package hash are the same.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::copy(fixture.join("src/main.rs"), dir.0.join("src/main.rs")).unwrap();
    let second = build_functions(&workspace, tools(), &request, &progress).unwrap();
    assert!(lines.text().matches("build: done").count() == 2);
    assert_eq!(second[0].artifact.sha256(), built.artifact.sha256());
}
