//! `clorch bench --torch PYTHON`: P7 takes PyTorch's figures from the embedded script run by
//! that Python, one thread, in the same run. No PyTorch here (a 5 GB wheel), so a stand-in
//! "Python" checks the contract: it is given the script, `--only` each P7 net, `--json FILE`,
//! and `OMP_NUM_THREADS=1`, and its figures are the reference column; a failing one is named.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod common;
use common::{clorch, text, Scratch};

/// A stand-in Python that writes `rows` for the net named by `--only` into `--json`, after
/// checking it was started as `clorch bench` must start it.
fn fake_python(dir: &Path, fail: bool) -> PathBuf {
    let path = dir.join(if fail { "broken-python" } else { "python" });
    let body = if fail {
        "echo 'ModuleNotFoundError: No module named torch' >&2; exit 1".to_string()
    } else {
        r#"
script=$1; shift
grep -q "def fwd_flops_per_sample" "$script" || { echo "not the conv script: $script" >&2; exit 3; }
[ "$OMP_NUM_THREADS" = 1 ] || { echo "OMP_NUM_THREADS=$OMP_NUM_THREADS" >&2; exit 4; }
while [ $# -gt 0 ]; do
  case $1 in --only) only=$2; shift;; --json) json=$2; shift;; esac; shift
done
case $only in
  lop_convnet) rows='{"net":"lop_convnet","batch":1,"samples_per_s":11.0},{"net":"lop_convnet","batch":32,"samples_per_s":12.0},{"net":"lop_convnet","batch":100,"samples_per_s":13.0}';;
  reduced_resnet18) rows='{"net":"reduced_resnet18_nf20","batch":1,"samples_per_s":5.0},{"net":"reduced_resnet18_nf20","batch":10,"samples_per_s":6.0},{"net":"reduced_resnet18_nf20","batch":32,"samples_per_s":7.0},{"net":"reduced_resnet18_nf20","batch":128,"samples_per_s":1000000.0}';;
  *) echo "unexpected --only $only" >&2; exit 5;;
esac
printf '{"torch":"stand-in","rows":[%s]}' "$rows" > "$json"
"#
        .to_string()
    };
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn torch_figures_measured_now_are_the_reference_column() {
    let s = Scratch::new("bench-torch");
    let python = fake_python(&s.path(""), false);
    let scratch = s.path("scratch");
    let out = clorch(&[
        "bench",
        "--only",
        "p7",
        "--quick",
        "--scratch",
        scratch.to_str().unwrap(),
        "--torch",
        python.to_str().unwrap(),
    ]);
    let table = text(&out.stdout);
    for figure in ["11 samples/s (measured now)", "13 samples/s (measured now)", "6 samples/s (measured now)"]
    {
        assert!(table.contains(figure), "{figure}:\n{table}\n{}", text(&out.stderr));
    }
    // The stand-in's impossible figure for the big batch is a missed target: exit 1, named.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("targets missed: P7"), "{}", text(&out.stderr));
    assert!(!table.contains("committed figure"), "{table}");
}

#[test]
fn a_python_without_torch_is_an_error_naming_it() {
    let s = Scratch::new("bench-no-torch");
    let python = fake_python(&s.path(""), true);
    let out = clorch(&[
        "bench",
        "--only",
        "p7",
        "--quick",
        "--scratch",
        s.path("scratch").to_str().unwrap(),
        "--torch",
        python.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("broken-python") && err.contains("No module named torch"), "{err}");
}
