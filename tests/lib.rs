//! End-to-end tests of Yitong: the HIS and bureau workflows in `e2e/`, traces and metrics in
//! `telemetry/`. This library holds what both test binaries share. Run them with the README's
//! test command.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `yitong` binary next to the test binary (target/<profile>/deps/e2e-... ->
/// target/<profile>/yitong). Cargo does not build another package's binary for a test, so it
/// is built here once per process; cargo leaves it untouched when it is fresh.
pub fn yitong() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in target/<profile>/deps");
        let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "yitong",
                "--bin",
                "yitong",
                "--profile",
            ])
            .arg(&profile)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build of the yitong binary failed");
        let binary = profile_dir.join(format!("yitong{}", std::env::consts::EXE_SUFFIX));
        assert!(binary.exists(), "no binary at {}", binary.display());
        binary
    })
}
