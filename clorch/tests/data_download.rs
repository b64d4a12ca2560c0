//! Issue 18, data: `clorch data download` against a file server on 127.0.0.1 (`--mirror`):
//! a file that is not the published one is refused, a partial download is resumed with
//! `Range`, no network is said plainly. The complete, verified path is covered in
//! `datasets/tests/download.rs`, where the fixtures' checksums can be the catalogue's.

use std::path::Path;

use test_support::file_server::{closed_port_url, FileServer};

mod common;
use common::{clorch, clorch_env, text, Scratch};

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
/// Its published size and SHA-256 (the catalogue's).
const TRAIN_IMAGES_SIZE: usize = 9_912_422;
const TRAIN_IMAGES_SHA256: &str = "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609";

/// Bytes of the published size that are not the published file.
fn impostor() -> Vec<u8> {
    (0..TRAIN_IMAGES_SIZE).map(|i| (i % 251) as u8).collect()
}

fn download(dir: &Path, mirror: &str) -> std::process::Output {
    clorch(&["data", "download", "mnist", "--dir", dir.to_str().unwrap(), "--mirror", mirror])
}

#[test]
fn list_names_every_data_set() {
    let out = clorch(&["data", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    for name in ["mnist", "fashion-mnist", "cifar10", "cifar100", "imagenet32", "tiny-imagenet"] {
        assert!(listing.lines().any(|l| l.starts_with(&format!("{name} "))), "{name} missing:\n{listing}");
    }
}

#[test]
fn a_file_that_is_not_the_published_one_is_refused() {
    let server = FileServer::start([(format!("/mnist/{TRAIN_IMAGES}"), impostor())]);
    let scratch = Scratch::new("data-mismatch");
    let out = download(scratch.0.path(), &server.url());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains(TRAIN_IMAGES) && stderr.contains(TRAIN_IMAGES_SHA256), "{stderr}");
    assert!(stderr.contains("refused and deleted"), "{stderr}");
    assert!(!scratch.0.path().join("mnist").exists());
    assert!(!scratch.0.path().join(format!(".mnist.download/{TRAIN_IMAGES}.part")).exists());
}

#[test]
fn a_partial_download_is_resumed_with_range() {
    let bytes = impostor();
    let server = FileServer::start([(format!("/mnist/{TRAIN_IMAGES}"), bytes.clone())]);
    let scratch = Scratch::new("data-resume");
    // What an earlier run cut short left behind.
    let staging = scratch.0.path().join(".mnist.download");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join(format!("{TRAIN_IMAGES}.part")), &bytes[..1_000_000]).unwrap();
    // This run is cut as well, after 2,000,000 more bytes, and resumes again by itself.
    server.cut_next_after(2_000_000);
    let out = clorch_env(
        &["data", "download", "mnist", "--dir", scratch.0.path().to_str().unwrap()],
        &[("CLORCH_DATA_MIRROR", &server.url())],
    );
    let ranges: Vec<_> = server.requests().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, [Some("bytes=1000000-".to_string()), Some("bytes=3000000-".to_string())]);
    // The whole file arrived, and is still not the published one.
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("refused and deleted"), "{stderr}");
}

#[test]
fn offline_is_said_plainly() {
    let scratch = Scratch::new("data-offline");
    let mirror = closed_port_url();
    let out = download(scratch.0.path(), &mirror);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains(&format!("cannot reach {}", mirror.trim_start_matches("http://"))), "{stderr}");
    assert!(stderr.contains("needs internet access") && stderr.contains(TRAIN_IMAGES), "{stderr}");
}

#[test]
fn unknown_and_licensed_data_sets_are_bad_input() {
    let scratch = Scratch::new("data-names");
    let dir = scratch.0.path().to_str().unwrap();
    let out = clorch(&["data", "download", "mnist-full", "--dir", dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("known: mnist, fashion-mnist"), "{}", text(&out.stderr));
    let out = clorch(&["data", "download", "imagenet32", "--dir", dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("image-net.org"), "{}", text(&out.stderr));
}
