//! `install` against a file server on 127.0.0.1: complete downloads, checksum mismatches,
//! resumed transfers, no network, hostile archives and folders clorch did not write.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use datasets::catalogue::{Dataset, RemoteFile, Source, Unpack};
use datasets::install::MANIFEST;
use datasets::{install, DownloadError, Downloader, InstallError, Installed, UnpackError};
use sha2::{Digest, Sha256};
use test_support::file_server::{closed_port_url, FileServer};

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes that differ at every offset, so that a wrong resume offset cannot go unnoticed.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

fn remote(name: &str, bytes: &[u8], unpack: Unpack) -> RemoteFile {
    RemoteFile {
        file_name: name.into(),
        urls: vec![format!("https://publisher.invalid/{name}")],
        size: Some(bytes.len() as u64),
        sha256: sha256(bytes),
        unpack,
    }
}

fn dataset(name: &str, files: Vec<RemoteFile>) -> Dataset {
    Dataset {
        name: name.into(),
        title: format!("{name} (test)"),
        licence: "test data".into(),
        source: Source::Download { files, layout: "a.gz and b.gz".into() },
    }
}

/// No automatic resume, so that each call makes one attempt per file; short timeouts.
fn one_attempt() -> Downloader {
    Downloader::new(Duration::from_secs(5), Duration::from_secs(10), 0)
}

fn run(set: &Dataset, dir: &Path, downloader: &Downloader, mirror: &str) -> Result<Installed, InstallError> {
    install(set, dir, downloader, Some(mirror), &mut |_| {})
}

fn kept_files() -> (Vec<(String, Vec<u8>)>, Dataset) {
    let a = payload(200_000, 1);
    let b = payload(1_000, 2);
    let set = dataset("digits", vec![remote("a.gz", &a, Unpack::Keep), remote("b.gz", &b, Unpack::Keep)]);
    (vec![("/digits/a.gz".into(), a), ("/digits/b.gz".into(), b)], set)
}

#[test]
fn downloads_verifies_and_then_finds_it_present() {
    let (files, set) = kept_files();
    let server = FileServer::start(files.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let installed = install(&set, dir.path(), &one_attempt(), Some(&server.url()), &mut |e| {
        events.push(format!("{e:?}"))
    })
    .unwrap();
    let folder = dir.path().join("digits");
    assert_eq!(installed, Installed::Downloaded { folder: folder.clone(), files: 2 });
    assert_eq!(std::fs::read(folder.join("a.gz")).unwrap(), files[0].1);
    assert_eq!(std::fs::read(folder.join("b.gz")).unwrap(), files[1].1);
    let manifest = std::fs::read_to_string(folder.join(MANIFEST)).unwrap();
    assert!(manifest.contains(&format!("{}  a.gz", sha256(&files[0].1))), "{manifest}");
    // Nothing is left beside it but the data set's folder.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["digits"]);
    assert!(events.iter().any(|e| e.contains("Bytes") && e.contains("done: 200000")), "{events:?}");
    assert!(events.iter().any(|e| e.starts_with("Verifying")), "{events:?}");

    let requests = server.requests().len();
    let again = run(&set, dir.path(), &one_attempt(), &server.url()).unwrap();
    assert_eq!(again, Installed::AlreadyPresent { folder: folder.clone(), files: 2 });
    assert_eq!(server.requests().len(), requests, "nothing is fetched again");

    // A file changed after the download is reported, not silently replaced.
    std::fs::write(folder.join("b.gz"), b"edited").unwrap();
    let err = run(&set, dir.path(), &one_attempt(), &server.url()).unwrap_err();
    assert!(matches!(err, InstallError::Changed { ref file, .. } if file == "b.gz"), "{err}");
    assert_eq!(std::fs::read(folder.join("b.gz")).unwrap(), b"edited");
}

#[test]
fn checksum_mismatch_is_refused_and_nothing_is_kept() {
    let (mut files, set) = kept_files();
    files[0].1[100] ^= 0xff; // the server's copy of a.gz is not the published one
    let server = FileServer::start(files);
    let dir = tempfile::tempdir().unwrap();
    let err = run(&set, dir.path(), &one_attempt(), &server.url()).unwrap_err();
    let InstallError::Download(DownloadError::Mismatch { ref file, ref expected, .. }) = err else {
        panic!("expected a checksum mismatch, got {err}");
    };
    assert_eq!(file, "a.gz");
    assert_eq!(expected, &set.files()[0].sha256);
    let message = err.to_string();
    assert!(message.contains("refused and deleted"), "{message}");
    assert!(!dir.path().join("digits").exists());
    let staging = dir.path().join(".digits.download");
    assert!(!staging.join("a.gz").exists() && !staging.join("a.gz.part").exists());
}

#[test]
fn a_cut_transfer_resumes_on_the_next_call() {
    let (files, set) = kept_files();
    let server = FileServer::start(files.clone());
    let dir = tempfile::tempdir().unwrap();
    server.cut_next_after(70_000);
    let err = run(&set, dir.path(), &one_attempt(), &server.url()).unwrap_err();
    let InstallError::Download(DownloadError::Interrupted { received, ref part, .. }) = err else {
        panic!("expected a cut transfer, got {err}");
    };
    assert_eq!(received, 70_000);
    assert_eq!(std::fs::metadata(part).unwrap().len(), 70_000);
    assert!(err.to_string().contains("running the same command again resumes"), "{err}");
    assert!(!dir.path().join("digits").exists());

    let installed = run(&set, dir.path(), &one_attempt(), &server.url()).unwrap();
    assert!(matches!(installed, Installed::Downloaded { files: 2, .. }));
    assert_eq!(std::fs::read(dir.path().join("digits/a.gz")).unwrap(), files[0].1);
    let ranges: Vec<_> =
        server.requests().into_iter().filter(|r| r.path == "/digits/a.gz").map(|r| r.range).collect();
    assert_eq!(ranges, [None, Some("bytes=70000-".to_string())]);
}

#[test]
fn a_cut_transfer_resumes_within_one_call_when_allowed() {
    let (files, set) = kept_files();
    let server = FileServer::start(files.clone());
    let dir = tempfile::tempdir().unwrap();
    server.cut_next_after(12_345);
    let downloader = Downloader::new(Duration::from_secs(5), Duration::from_secs(10), 1);
    let mut offsets = Vec::new();
    install(&set, dir.path(), &downloader, Some(&server.url()), &mut |e| {
        if let datasets::Event::Transfer { file: "a.gz", offset, .. } = e {
            offsets.push(offset);
        }
    })
    .unwrap();
    assert_eq!(offsets, [0, 12_345]);
    assert_eq!(std::fs::read(dir.path().join("digits/a.gz")).unwrap(), files[0].1);
}

#[test]
fn a_server_that_ignores_ranges_sends_it_all_again() {
    let (files, set) = kept_files();
    let server = FileServer::start(files.clone());
    server.ignore_ranges();
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join(".digits.download");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join("a.gz.part"), &files[0].1[..5_000]).unwrap();
    run(&set, dir.path(), &one_attempt(), &server.url()).unwrap();
    assert_eq!(std::fs::read(dir.path().join("digits/a.gz")).unwrap(), files[0].1);
    assert_eq!(server.requests()[0].range.as_deref(), Some("bytes=5000-"));
}

#[test]
fn offline_says_so_and_names_the_layout() {
    let (_, set) = kept_files();
    let dir = tempfile::tempdir().unwrap();
    let mirror = closed_port_url();
    let err = run(&set, dir.path(), &one_attempt(), &mirror).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, InstallError::Offline { .. }), "{message}");
    let host = mirror.trim_start_matches("http://");
    assert!(message.contains(&format!("cannot reach {host}")), "{message}");
    assert!(message.contains("needs internet access"), "{message}");
    assert!(message.contains("a.gz and b.gz"), "{message}");
    assert!(!dir.path().join("digits").exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "an attempt that kept nothing leaves nothing: {left:?}");
}

#[test]
fn a_folder_clorch_did_not_write_is_left_alone() {
    let (files, set) = kept_files();
    let server = FileServer::start(files);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("digits");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.gz"), b"my own copy").unwrap();
    let err = run(&set, dir.path(), &one_attempt(), &server.url()).unwrap_err();
    assert!(matches!(err, InstallError::Foreign { ref found, .. } if found == "a.gz"), "{err}");
    assert!(err.to_string().contains("refusing to write into"), "{err}");
    assert_eq!(std::fs::read(folder.join("a.gz")).unwrap(), b"my own copy");
    assert!(server.requests().is_empty(), "refused before downloading");

    // An empty folder is free to fill.
    std::fs::remove_file(folder.join("a.gz")).unwrap();
    assert!(matches!(
        run(&set, dir.path(), &one_attempt(), &server.url()).unwrap(),
        Installed::Downloaded { files: 2, .. }
    ));
}

#[test]
fn one_download_at_a_time_per_data_set() {
    let (files, set) = kept_files();
    let server = FileServer::start(files);
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join(".digits.download");
    std::fs::create_dir(&staging).unwrap();
    let other = std::fs::File::create(staging.join(".lock")).unwrap();
    other.lock().unwrap();
    let err = run(&set, dir.path(), &one_attempt(), &server.url()).unwrap_err();
    assert!(matches!(err, InstallError::Busy { .. }), "{err}");
    assert!(server.requests().is_empty());
    drop(other);
    assert!(matches!(
        run(&set, dir.path(), &one_attempt(), &server.url()).unwrap(),
        Installed::Downloaded { files: 2, .. }
    ));
    assert!(!staging.exists());
}

/// A tar.gz of `entries` (name, type, contents), names written raw so that hostile ones get in.
fn tar_gz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        if *kind == tar::EntryType::Symlink {
            header.set_link_name("cifar/data.bin").unwrap();
        }
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    let mut gz = builder.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

fn archive_set(archive: &[u8]) -> (Vec<(String, Vec<u8>)>, Dataset) {
    let set = dataset("tiny-cifar", vec![remote("tiny.tar.gz", archive, Unpack::TarGz)]);
    (vec![("/tiny-cifar/tiny.tar.gz".into(), archive.to_vec())], set)
}

#[test]
fn archives_unpack_into_their_folder() {
    use tar::EntryType::{Directory, Regular};
    let batch = payload(3_073 * 4, 7);
    let archive = tar_gz(&[
        ("cifar/", Directory, b""),
        ("cifar/data.bin", Regular, &batch),
        ("./cifar/meta.txt", Regular, b"airplane\n"),
    ]);
    let (files, set) = archive_set(&archive);
    let server = FileServer::start(files);
    let dir = tempfile::tempdir().unwrap();
    let installed = run(&set, dir.path(), &one_attempt(), &server.url()).unwrap();
    let folder = dir.path().join("tiny-cifar");
    assert_eq!(installed, Installed::Downloaded { folder: folder.clone(), files: 2 });
    assert_eq!(std::fs::read(folder.join("cifar/data.bin")).unwrap(), batch);
    assert_eq!(std::fs::read(folder.join("cifar/meta.txt")).unwrap(), b"airplane\n");
    assert!(!folder.join("tiny.tar.gz").exists(), "the archive is deleted once unpacked");
    assert!(!dir.path().join(".tiny-cifar.download").exists());
    assert!(matches!(
        run(&set, dir.path(), &one_attempt(), &server.url()).unwrap(),
        Installed::AlreadyPresent { files: 2, .. }
    ));
}

#[test]
fn archive_entries_that_escape_or_link_are_refused() {
    use tar::EntryType::{Regular, Symlink};
    let outside = tempfile::tempdir().unwrap();
    let absolute = outside.path().join("planted.bin");
    let absolute = absolute.to_str().unwrap().to_string();
    let cases: [(&str, tar::EntryType, &str); 3] = [
        ("cifar/../../planted.bin", Regular, "points outside"),
        (&absolute, Regular, "points outside"),
        ("cifar/link.bin", Symlink, "symbolic link"),
    ];
    for (name, kind, expected) in cases {
        let archive = tar_gz(&[("cifar/data.bin", Regular, b"ok"), (name, kind, b"")]);
        let (files, set) = archive_set(&archive);
        let server = FileServer::start(files);
        let dir = tempfile::tempdir().unwrap();
        let err = run(&set, dir.path(), &one_attempt(), &server.url()).unwrap_err();
        assert!(
            matches!(err, InstallError::Unpack(UnpackError::Escapes { .. } | UnpackError::NotPlain { .. })),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(expected), "{name}: {err}");
        assert!(!dir.path().join("tiny-cifar").exists(), "{name}: nothing is put in place");
        assert!(!dir.path().join("planted.bin").exists() && !outside.path().join("planted.bin").exists());
    }
}

#[test]
fn licensed_data_sets_say_where_to_get_them() {
    let set = datasets::catalogue::find("tiny-imagenet").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = install(&set, dir.path(), &one_attempt(), None, &mut |_| {}).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, InstallError::Manual { .. }), "{message}");
    assert!(message.contains("tiny-imagenet-200.zip"), "{message}");
    assert!(message.contains("wnids.txt"), "{message}");
    assert!(!dir.path().join("tiny-imagenet").exists());
}
