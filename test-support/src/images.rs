//! Image data sets in their canonical binary formats, generated for tests (no test downloads).

use std::path::Path;

/// A pixel byte of image `i` at byte position `k` of a file written with `salt`: a small hash,
/// the same on every machine.
pub fn hashed_pixel(i: usize, k: usize, salt: usize) -> u8 {
    ((i * 131 + k * 7 + salt) % 251) as u8
}

/// CIFAR-100's binary version in `dir` (created if needed): `train.bin` with `per_class`
/// training images of each class and `test.bin` with one test image of each class. Image `i` is
/// of fine class `i mod 100` (coarse class fine / 5); its 3,072 pixel bytes are `pixel(i, k,
/// salt)`, salt 0 in the training file and 17 in the test file.
pub fn write_cifar100(dir: &Path, per_class: usize, pixel: impl Fn(usize, usize, usize) -> u8 + Copy) {
    std::fs::create_dir_all(dir).expect("the fixture folder can be created");
    let records = |count: usize, salt: usize| -> Vec<u8> {
        (0..count)
            .flat_map(|i| {
                let fine = (i % 100) as u8;
                [fine / 5, fine].into_iter().chain((0..3072).map(move |k| pixel(i, k, salt)))
            })
            .collect()
    };
    std::fs::write(dir.join("train.bin"), records(100 * per_class, 0)).expect("the fixture is written");
    std::fs::write(dir.join("test.bin"), records(100, 17)).expect("the fixture is written");
}
