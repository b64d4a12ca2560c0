use std::fs;
use std::time::Instant;

use rand::Rng as _;
use serde_json::json;

use super::*;

fn sample() -> Checkpoint {
    let mut c = Checkpoint::new(json!({
        "tasks_done": 3,
        "step": 12345u64,
        "rng": {"seed": [1, 2, 3], "word_pos_lo": u64::MAX},
        "lr": 0.1f64,
    }));
    c.put_f32("model.layer0.weight", [2, 3], vec![1.5, -0.0, f32::MIN_POSITIVE, 3.0, -7.25, 1e-40])
        .unwrap()
        .put_f32("model.layer0.bias", 2, vec![f32::from_bits(0x7fc0_1234), f32::INFINITY])
        .unwrap()
        .put_u32("method.clnp.free", [3], vec![0, 7, u32::MAX])
        .unwrap()
        .put_u64("method.cbp.age.1", [2, 2], vec![0, 1, u64::MAX, 1 << 40])
        .unwrap()
        .put_u8("method.pnn.mask", 4, vec![0, 1, 255, 128])
        .unwrap()
        .put_f32("empty", 0, Vec::<f32>::new())
        .unwrap()
        .put_u64("scalar", [], vec![42])
        .unwrap();
    c
}

/// Recomputes the trailer after a deliberate edit, so the structural checks (not the
/// checksum) are what the test exercises.
fn reseal(bytes: &mut Vec<u8>) {
    let n = bytes.len() - CHECKSUM_LEN;
    let hash = blake3::hash(&bytes[..n]);
    bytes.truncate(n);
    bytes.extend_from_slice(hash.as_bytes());
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn every_dtype_round_trips_bit_exactly() {
    let c = sample();
    let bytes = c.to_bytes();
    let d = Checkpoint::from_bytes(&bytes).unwrap();
    assert_eq!(d.meta(), c.meta());
    assert_eq!(d.names().collect::<Vec<_>>(), c.names().collect::<Vec<_>>());
    for name in ["model.layer0.weight", "model.layer0.bias", "empty"] {
        assert_eq!(bits(d.f32(name).unwrap()), bits(c.f32(name).unwrap()), "{name}");
    }
    // The NaN payload survives.
    assert_eq!(d.f32("model.layer0.bias").unwrap()[0].to_bits(), 0x7fc0_1234);
    assert_eq!(d.u32("method.clnp.free").unwrap(), &[0, 7, u32::MAX]);
    assert_eq!(d.u64("method.cbp.age.1").unwrap(), &[0, 1, u64::MAX, 1 << 40]);
    assert_eq!(d.u8("method.pnn.mask").unwrap(), &[0, 1, 255, 128]);
    assert_eq!(d.u64("scalar").unwrap(), &[42]);
    assert_eq!(d.tensor("scalar").unwrap().shape().dims(), &[] as &[usize]);
    assert_eq!(d.tensor("method.cbp.age.1").unwrap().shape(), &Shape::from([2, 2]));
    assert_eq!(d.get_shaped::<f32>("model.layer0.weight", [2, 3]).unwrap().len(), 6);
    // Deterministic: decoding and re-encoding gives the same bytes.
    assert_eq!(d.to_bytes(), bytes);
}

#[test]
fn encoding_does_not_depend_on_insertion_order() {
    let mut a = Checkpoint::new(json!(null));
    a.put_u8("b", 1, vec![1]).unwrap().put_u8("a", 1, vec![2]).unwrap();
    let mut b = Checkpoint::new(json!(null));
    b.put_u8("a", 1, vec![2]).unwrap().put_u8("b", 1, vec![1]).unwrap();
    assert_eq!(a.to_bytes(), b.to_bytes());
}

#[test]
fn getters_name_the_missing_tensor_and_the_mismatch() {
    let c = sample();
    let err = c.f32("model.layer1.weight").unwrap_err();
    assert_eq!(err.to_string(), "the checkpoint has no tensor named `model.layer1.weight`");
    let err = c.u64("model.layer0.weight").unwrap_err();
    assert_eq!(err.to_string(), "tensor `model.layer0.weight` holds f32 values, not u64");
    let err = c.get_shaped::<f32>("model.layer0.weight", [3, 2]).unwrap_err();
    assert_eq!(err.to_string(), "tensor `model.layer0.weight` has shape [2, 3], not the expected [3, 2]");
}

#[test]
fn puts_reject_bad_shapes_duplicates_and_names() {
    let mut c = Checkpoint::new(json!({}));
    let err = c.put_f32("w", [2, 3], vec![0.0; 5]).unwrap_err();
    assert_eq!(err.to_string(), "tensor `w`: shape [2, 3] holds 6 values but 5 were given");
    assert!(matches!(
        c.put_u8("w", [usize::MAX, 2], vec![0]),
        Err(CheckpointError::LengthMismatch { expected: usize::MAX, .. })
    ));
    c.put_f32("w", 1, vec![0.0]).unwrap();
    assert!(matches!(c.put_u8("w", 1, vec![0]), Err(CheckpointError::DuplicateTensor { .. })));
    for bad in ["", ".w", "w.", "a..b", "a b", "a\tb", &"x".repeat(MAX_NAME_LEN + 1)] {
        let err = c.put_u8(bad, 1, vec![0]).unwrap_err();
        assert!(matches!(err, CheckpointError::InvalidName { .. }), "{bad:?}: {err}");
    }
    assert_eq!(c.len(), 1, "failed puts leave the checkpoint unchanged");
}

#[test]
fn prefixes_match_whole_segments() {
    let mut c = Checkpoint::new(json!(null));
    for name in ["method.cbp", "method.cbp.age.0", "method.cbp.age.1", "method.cbpx.a", "model.w"] {
        c.put_u8(name, 1, vec![0]).unwrap();
    }
    assert_eq!(c.tensors_with_prefix("method.cbp"), ["method.cbp", "method.cbp.age.0", "method.cbp.age.1"]);
    assert_eq!(c.tensors_with_prefix("method.cbp.age"), ["method.cbp.age.0", "method.cbp.age.1"]);
    assert_eq!(c.tensors_with_prefix("method.").len(), 4);
    assert_eq!(c.tensors_with_prefix("").len(), 5);
    assert!(c.tensors_with_prefix("method.cb").is_empty());
    assert!(c.tensors_with_prefix("zzz").is_empty());
}

#[test]
fn a_corrupted_byte_is_a_checksum_error_naming_the_file() {
    let dir = test_support::scratch("corrupt");
    let name = file_name(17);
    sample().write_atomic(dir.path(), &name).unwrap();
    let path = dir.path().join(&name);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    let err = Checkpoint::read(&path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("checkpoint-0000000017.ckpt"), "{message}");
    assert!(message.contains("checksum mismatch"), "{message}");
    assert!(message.contains("torn write"), "{message}");
    assert!(matches!(err, CheckpointError::Invalid { source: FormatError::Checksum { .. }, .. }));
}

#[test]
fn a_truncated_file_is_rejected() {
    let bytes = sample().to_bytes();
    assert!(matches!(Checkpoint::from_bytes(&bytes[..bytes.len() - 1]), Err(FormatError::Checksum { .. })));
    assert!(matches!(Checkpoint::from_bytes(&bytes[..40]), Err(FormatError::TooShort { len: 40, min: 52 })));
    assert!(matches!(Checkpoint::from_bytes(&[]), Err(FormatError::TooShort { .. })));
}

#[test]
fn wrong_magic_and_other_versions_get_clear_errors() {
    let mut bytes = sample().to_bytes();
    bytes[..8].copy_from_slice(b"PK\x03\x04abcd");
    let err = Checkpoint::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"not a clorch checkpoint: the file starts with "PK\\x03\\x04abcd", not "CLORCHCK""#
    );

    let mut bytes = sample().to_bytes();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut bytes);
    let err = Checkpoint::from_bytes(&bytes).unwrap_err();
    assert_eq!(err, FormatError::NewerVersion { found: 2, supported: 1 });
    assert!(err.to_string().contains("newer than this clorch reads"), "{err}");

    bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
    reseal(&mut bytes);
    let err = Checkpoint::from_bytes(&bytes).unwrap_err();
    assert_eq!(err, FormatError::OlderVersion { found: 0, supported: 1 });
}

#[test]
fn inconsistent_tables_are_rejected_even_with_a_valid_checksum() {
    let mut c = Checkpoint::new(json!(null));
    c.put_f32("w", 2, vec![1.0, 2.0]).unwrap();
    let bytes = c.to_bytes();
    let header_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[20..20 + header_len]).unwrap().to_owned();
    let data = bytes[20 + header_len..bytes.len() - CHECKSUM_LEN].to_vec();
    let rebuild = |header: &str, data: &[u8]| {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&(header.len() as u64).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b.extend_from_slice(&[0; CHECKSUM_LEN]);
        reseal(&mut b);
        b
    };
    assert!(Checkpoint::from_bytes(&rebuild(&header, &data)).is_ok(), "{header}");

    let cases = [
        (header.replace(r#""length":8"#, r#""length":4"#), data.clone(), "needs 8"),
        (header.replace(r#""offset":0"#, r#""offset":4"#), data.clone(), "contiguous"),
        (header.replace(r#""shape":[2]"#, r#""shape":[3]"#), data.clone(), "needs 12"),
        (header.replace(r#""dtype":"f32""#, r#""dtype":"f16""#), data.clone(), "f16"),
        (header.replace(r#""name":"w""#, r#""name":"""#), data.clone(), "empty"),
        (header.replace(r#""meta""#, r#""mta""#), data.clone(), "mta"),
        (header.clone(), data[..4].to_vec(), "run past the data section"),
        (header.clone(), [data.clone(), vec![0; 4]].concat(), "covers 8 bytes"),
        (header.replace(r#""shape":[2]"#, r#""shape":[4611686018427387904,4]"#), data.clone(), "overflows"),
        (
            header.replace("}]}", r#"},{"name":"w","dtype":"f32","shape":[0],"offset":8,"length":0}]}"#),
            data.clone(),
            "appears twice",
        ),
    ];
    for (header, data, expected) in cases {
        let err = Checkpoint::from_bytes(&rebuild(&header, &data)).unwrap_err();
        assert!(err.to_string().contains(expected), "{header}: {err}");
    }

    let mut bytes = rebuild(&header, &data);
    bytes[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    reseal(&mut bytes);
    assert!(matches!(Checkpoint::from_bytes(&bytes), Err(FormatError::HeaderLength { .. })));
}

/// Light fuzzing: every single-byte flip and every truncation of a small checkpoint is an
/// error, and random edits to a resealed file (so the parser, not the checksum, sees them)
/// never panic.
#[test]
fn garbage_is_an_error_never_a_panic() {
    let bytes = sample().to_bytes();
    for i in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 1 << (i % 8);
        assert!(Checkpoint::from_bytes(&flipped).is_err(), "flip at byte {i} accepted");
    }
    for len in 0..bytes.len() {
        assert!(Checkpoint::from_bytes(&bytes[..len]).is_err(), "truncation to {len} accepted");
    }
    let mut rng = crate::rng::stream(1, "test.checkpoint.fuzz", 0);
    for _ in 0..2000 {
        let mut edited = bytes.clone();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(8..edited.len() - CHECKSUM_LEN);
            edited[at] = rng.gen();
        }
        reseal(&mut edited);
        let _ = Checkpoint::from_bytes(&edited);
    }
    for len in [0usize, 10, 52, 100, 1000] {
        let mut garbage: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if len >= 12 {
            garbage[..8].copy_from_slice(&MAGIC);
            garbage[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        }
        assert!(Checkpoint::from_bytes(&garbage).is_err());
    }
}

#[test]
fn write_atomic_returns_the_checksum_and_leaves_no_temporary_file() {
    let dir = test_support::scratch("write");
    let c = sample();
    let checksum = c.write_atomic(dir.path(), &file_name(3)).unwrap();
    let bytes = fs::read(dir.path().join(file_name(3))).unwrap();
    assert_eq!(bytes, c.to_bytes());
    assert_eq!(checksum, blake3::hash(&bytes[..bytes.len() - CHECKSUM_LEN]).to_hex().as_str());
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["checkpoint-0000000003.ckpt"]);
    // Rewriting the same index replaces the file.
    let mut other = Checkpoint::new(json!({"x": 1}));
    other.put_u8("m", 1, vec![9]).unwrap();
    other.write_atomic(dir.path(), &file_name(3)).unwrap();
    assert_eq!(Checkpoint::read(&dir.path().join(file_name(3))).unwrap().u8("m").unwrap(), &[9]);

    for bad in ["", "..", "a/b", "x.ckpt.tmp"] {
        assert!(matches!(c.write_atomic(dir.path(), bad), Err(CheckpointError::InvalidFileName { .. })));
    }
    let missing = dir.path().join("no-such-folder");
    let err = c.write_atomic(&missing, &file_name(1)).unwrap_err();
    assert!(err.to_string().contains("cannot create"), "{err}");
}

#[test]
fn file_names_carry_the_index() {
    assert_eq!(file_name(17), "checkpoint-0000000017.ckpt");
    assert_eq!(parse_index("checkpoint-0000000017.ckpt"), Some(17));
    assert_eq!(parse_index("checkpoint-12345678901.ckpt"), Some(12_345_678_901));
    for other in [
        "checkpoint-0000000017.ckpt.tmp",
        "checkpoint-.ckpt",
        "checkpoint-+17.ckpt",
        "checkpoint-99999999999999999999999.ckpt",
        crate::protocol::files::EVENTS,
    ] {
        assert_eq!(parse_index(other), None, "{other}");
    }
}

fn tiny(index: u64) -> Checkpoint {
    let mut c = Checkpoint::new(json!({ "index": index }));
    c.put_u64("step", 1, vec![index * 100]).unwrap();
    c
}

#[test]
fn list_sorts_by_index_and_ignores_other_files() {
    let dir = test_support::scratch("list");
    for index in [10_000_000_000u64, 2, 9_999_999_999] {
        tiny(index).write_atomic(dir.path(), &file_name(index)).unwrap();
    }
    fs::write(dir.path().join("checkpoint-0000000005.ckpt.tmp"), b"half a write").unwrap();
    fs::write(dir.path().join(crate::protocol::files::EVENTS), b"{}\n").unwrap();
    fs::create_dir(dir.path().join("checkpoint-0000000007.ckpt")).unwrap();
    let indices: Vec<u64> = list(dir.path()).unwrap().iter().map(|f| f.index).collect();
    assert_eq!(indices, [2, 9_999_999_999, 10_000_000_000]);
    assert!(list(&dir.path().join("absent")).unwrap().is_empty());
}

#[test]
fn prune_keeps_the_newest_and_removes_crash_leftovers() {
    let dir = test_support::scratch("prune");
    for index in 1..=5 {
        tiny(index).write_atomic(dir.path(), &file_name(index)).unwrap();
    }
    let leftover = dir.path().join("checkpoint-0000000006.ckpt.tmp");
    fs::write(&leftover, b"torn").unwrap();
    fs::write(dir.path().join("notes.tmp"), b"not ours").unwrap();
    let removed = prune(dir.path(), 2).unwrap();
    assert_eq!(removed.len(), 4, "{removed:?}");
    assert!(!leftover.exists());
    assert!(dir.path().join("notes.tmp").exists(), "prune only removes its own files");
    let indices: Vec<u64> = list(dir.path()).unwrap().iter().map(|f| f.index).collect();
    assert_eq!(indices, [4, 5]);
    assert!(prune(dir.path(), 10).unwrap().is_empty());
    assert_eq!(prune(dir.path(), 0).unwrap().len(), 2);
    assert!(list(dir.path()).unwrap().is_empty());
}

#[test]
fn newest_valid_falls_back_past_corrupted_checkpoints_and_reports_them() {
    let dir = test_support::scratch("resume");
    let checksums: Vec<String> =
        [12u64, 15, 17].iter().map(|&i| tiny(i).write_atomic(dir.path(), &file_name(i)).unwrap()).collect();
    // 17 torn (truncated), 15 with a flipped byte, a crash-left temporary file for 18.
    let p17 = dir.path().join(file_name(17));
    let len = fs::metadata(&p17).unwrap().len();
    fs::OpenOptions::new().write(true).open(&p17).unwrap().set_len(len / 2).unwrap();
    let p15 = dir.path().join(file_name(15));
    let mut bytes = fs::read(&p15).unwrap();
    bytes[30] ^= 0xff;
    fs::write(&p15, bytes).unwrap();
    fs::write(dir.path().join("checkpoint-0000000018.ckpt.tmp"), b"").unwrap();

    let resume = newest_valid(dir.path()).unwrap();
    let valid = resume.checkpoint.as_ref().unwrap();
    assert_eq!(valid.index, 12);
    assert_eq!(valid.checksum, checksums[0]);
    assert_eq!(valid.checkpoint.u64("step").unwrap(), &[1200]);
    let rejected: Vec<u64> = resume.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, [17, 15]);
    let report = resume.to_string();
    assert!(report.contains("checkpoint-0000000017.ckpt: checksum mismatch"), "{report}");
    assert!(report.contains("checkpoint-0000000015.ckpt: checksum mismatch"), "{report}");
    assert!(report.ends_with("resuming from checkpoint-0000000012.ckpt"), "{report}");

    // Nothing verifies: start over, with the failures reported.
    fs::write(dir.path().join(file_name(12)), b"CLORCHCK").unwrap();
    let resume = newest_valid(dir.path()).unwrap();
    assert!(resume.checkpoint.is_none());
    assert_eq!(resume.rejected.len(), 3);
    assert!(resume.to_string().ends_with("no checkpoint verifies; starting from the beginning"));

    let empty = newest_valid(&dir.path().join("absent")).unwrap();
    assert!(empty.checkpoint.is_none() && empty.rejected.is_empty());
}

/// A 10M-parameter model (40 MB) must checkpoint well under a second; the bound here is
/// loose for a shared 2-core machine, the timings are printed.
#[test]
fn a_forty_megabyte_model_writes_and_reads_quickly() {
    let dir = test_support::scratch("speed");
    let mut rng = crate::rng::stream(2, "test.checkpoint.speed", 0);
    let weights: Vec<f32> = (0..10_000_000).map(|_| rng.gen()).collect();
    let mut c = Checkpoint::new(json!({"step": 1}));
    c.put_f32("model.weights", weights.len(), weights.clone()).unwrap();

    let start = Instant::now();
    let bytes = c.to_bytes();
    let encode = start.elapsed();
    let start = Instant::now();
    c.write_atomic(dir.path(), &file_name(1)).unwrap();
    let write = start.elapsed();
    let start = Instant::now();
    let back = Checkpoint::read(&dir.path().join(file_name(1))).unwrap();
    let read = start.elapsed();
    eprintln!("40 MB checkpoint: encode {encode:?}, write_atomic {write:?}, read+verify {read:?}");
    assert!(bytes.len() > 40_000_000);
    assert!(back.f32("model.weights").unwrap() == weights.as_slice());
    assert!(write.as_secs_f64() < 3.0 && read.as_secs_f64() < 3.0, "{write:?} {read:?}");
}
