//! What clorch's tests share, so that each is written once: scratch folders, a [`RunSpec`](protocol::RunSpec)
//! builder, the shipped MNIST subset, generated image data sets, a local file server for download tests, and the rule that under `CI=true` a test whose data,
//! browser, cluster or Python is missing fails instead of passing by returning early.

#![warn(missing_docs)]

mod captured;
pub mod events;
pub mod file_server;
pub mod images;
mod spec;

use std::path::PathBuf;

pub use captured::Captured;
pub use spec::{method_spec, SpecBuilder};
pub use tempfile::TempDir;

/// Whether the tests run in CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A test's prerequisite is missing: in CI that is a failure (`.ci/run` must provide it), on
/// a developer's machine the test says what it skips and why.
///
/// # Panics
/// Under `CI=true`, always.
pub fn missing(what: &str, how: &str) {
    assert!(!in_ci(), "CI=true but {what} is missing: {how}");
    println!("skipped: {what} is missing ({how})");
}

/// Debian's Chromium (or another Chromium on `PATH`), for the tests that render pages; `None`
/// when there is none — the caller then reports it through [`missing`].
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// `browser` run headless with a profile in `profile`: no sandbox (tests may run as root), no
/// GPU, no network of its own, no first-run pages. The caller adds what to do with the page.
pub fn headless(browser: &std::path::Path, profile: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// A fresh scratch folder, removed when dropped, named after the test for debugging.
pub fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("clorch-{name}-"))
        .tempdir()
        .expect("the temporary folder is writable")
}

/// The repository's root (the workspace folder).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The MNIST subset shipped in `data/mnist-10k` (8,000 / 2,000 real digits), or `None` with a
/// skip message when it is absent — never under `CI=true`, where its absence fails the test.
pub fn mnist_dir() -> Option<PathBuf> {
    let dir = repo_root().join("data/mnist-10k");
    if dir.join("train-images-idx3-ubyte.gz").is_file() {
        Some(dir)
    } else {
        missing(
            &format!("the MNIST subset {}", dir.display()),
            "it is part of the repository; restore it with git",
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_mnist_subset_is_found() {
        assert!(mnist_dir().is_some_and(|d| d.join("t10k-labels-idx1-ubyte.gz").is_file()));
    }

    #[test]
    fn scratch_folders_are_fresh_and_removed() {
        let a = scratch("x");
        let path = a.path().to_path_buf();
        assert!(path.is_dir() && std::fs::read_dir(&path).unwrap().next().is_none());
        drop(a);
        assert!(!path.exists());
    }
}
