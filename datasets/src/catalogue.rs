//! The data sets `clorch data download` knows: where each file comes from, the SHA-256 it must
//! have, the layout it leaves behind, and the terms it comes under.
//!
//! Checksums are never computed here from a download: each one is the value several
//! independent projects pinned for the same file, cross-checked with the size and, where the
//! publisher gives one, the publisher's MD5:
//!
//! - MNIST: the SHA-256 that TensorFlow Datasets records for the four files (with sizes
//!   9,912,422 / 28,881 / 1,648,877 / 4,542 bytes), also pinned by torchvision-style loaders
//!   that fetch them from the `ossci-datasets` mirror.
//! - Fashion-MNIST: the SHA-256 pinned by several loaders next to the MD5 on Zalando's page.
//! - CIFAR-10 and CIFAR-100, binary versions: the page lists MD5 only
//!   (`c32a1d4ab5d03f1284b67883e8d87530` and `03b5dce01913d631647c71ecec9e9cb8`); the
//!   SHA-256 here are the ones independent loaders (Go, Julia, Haskell, Ruby) pinned for the
//!   same archives of 170,052,171 and 168,513,733 bytes.

/// One data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The name on the command line (`clorch data download <name>`) and of the folder it is
    /// written to.
    pub name: String,
    /// The name people know it by.
    pub title: String,
    /// Its terms of use, in a line.
    pub licence: String,
    /// Whether clorch fetches it or only says where to get it.
    pub source: Source,
}

/// How a data set reaches the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// clorch downloads these files, verifies them and lays them out.
    Download {
        /// The files, each fetched from the first of its URLs that answers.
        files: Vec<RemoteFile>,
        /// What the data set's folder holds afterwards, for people and error messages.
        layout: String,
    },
    /// Behind a registration or licence that clorch cannot accept for the user: where to get
    /// it and the layout to put it in.
    Manual {
        /// Where and how to obtain it.
        instructions: String,
        /// The layout to put the files in.
        layout: String,
    },
}

/// One published file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// The file name, also its name in a mirror (`<mirror>/<data set>/<file name>`).
    pub file_name: String,
    /// Where it is published, the canonical place first, then mirrors.
    pub urls: Vec<String>,
    /// Its size in bytes, when known: the progress bar's length when a server does not say,
    /// and a bound a server cannot make clorch exceed.
    pub size: Option<u64>,
    /// The SHA-256 it must have, lower-case hex.
    pub sha256: String,
    /// What to do with it once verified.
    pub unpack: Unpack,
}

/// What becomes of a verified file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpack {
    /// Kept as it is (the MNIST loader reads the `.gz` files directly).
    Keep,
    /// A gzip-compressed tar archive, unpacked into the data set's folder and then deleted.
    TarGz,
}

impl Dataset {
    /// The files to fetch; empty for a data set clorch does not download.
    pub fn files(&self) -> &[RemoteFile] {
        match &self.source {
            Source::Download { files, .. } => files,
            Source::Manual { .. } => &[],
        }
    }

    /// The layout the data set's folder has (or must have, for a manual one).
    pub fn layout(&self) -> &str {
        match &self.source {
            Source::Download { layout, .. } | Source::Manual { layout, .. } => layout,
        }
    }
}

/// Every data set, in the order `clorch data list` prints them.
pub fn all() -> Vec<Dataset> {
    vec![mnist(), fashion_mnist(), cifar10(), cifar100(), imagenet32(), tiny_imagenet()]
}

/// The data set called `name`, if there is one.
pub fn find(name: &str) -> Option<Dataset> {
    all().into_iter().find(|d| d.name == name)
}

/// The names of every data set, for error messages.
pub fn names() -> Vec<String> {
    all().into_iter().map(|d| d.name).collect()
}

/// The four IDX files of MNIST and Fashion-MNIST: the names `workers::stream::mnist` reads.
const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

const IDX_LAYOUT: &str = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
     t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (kept gzipped; a recipe's \
     `stream.data_dir` points at this folder)";

/// The four IDX files, each from `bases` in order, with their sizes and SHA-256.
fn idx_files(bases: &[&str], checksums: [(u64, &str); 4]) -> Vec<RemoteFile> {
    IDX_FILES
        .iter()
        .zip(checksums)
        .map(|(name, (size, sha256))| RemoteFile {
            file_name: name.to_string(),
            urls: bases.iter().map(|base| format!("{base}{name}")).collect(),
            size: Some(size),
            sha256: sha256.to_string(),
            unpack: Unpack::Keep,
        })
        .collect()
}

fn mnist() -> Dataset {
    Dataset {
        name: "mnist".into(),
        title: "MNIST handwritten digits (60,000 + 10,000, 28x28 grey)".into(),
        licence: "Y. LeCun, C. Cortes, C. J. C. Burges; terms at http://yann.lecun.com/exdb/mnist/".into(),
        source: Source::Download {
            // The canonical site often refuses downloads; torchvision tries the S3 mirror first
            // for that reason, and so does clorch.
            files: idx_files(
                &["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
                [
                    (9_912_422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
                    (28_881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
                    (1_648_877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
                    (4_542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
                ],
            ),
            layout: IDX_LAYOUT.into(),
        },
    }
}

fn fashion_mnist() -> Dataset {
    Dataset {
        name: "fashion-mnist".into(),
        title: "Fashion-MNIST, Zalando's article images (60,000 + 10,000, 28x28 grey)".into(),
        licence: "MIT (Zalando SE)".into(),
        source: Source::Download {
            files: idx_files(
                &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
                [
                    (26_421_880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
                    (29_515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
                    (4_422_102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
                    (5_148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
                ],
            ),
            layout: IDX_LAYOUT.into(),
        },
    }
}

/// A CIFAR archive, binary version, from the authors' page.
fn cifar_archive(file_name: &str, size: u64, sha256: &str) -> Vec<RemoteFile> {
    vec![RemoteFile {
        file_name: file_name.into(),
        urls: vec![format!("https://www.cs.toronto.edu/~kriz/{file_name}")],
        size: Some(size),
        sha256: sha256.into(),
        unpack: Unpack::TarGz,
    }]
}

const CIFAR_LICENCE: &str = "no licence stated; cite A. Krizhevsky, Learning Multiple Layers of \
     Features from Tiny Images, 2009 (https://www.cs.toronto.edu/~kriz/cifar.html)";

fn cifar10() -> Dataset {
    Dataset {
        name: "cifar10".into(),
        title: "CIFAR-10, binary version (50,000 + 10,000, 32x32 colour, 10 classes)".into(),
        licence: CIFAR_LICENCE.into(),
        source: Source::Download {
            files: cifar_archive(
                "cifar-10-binary.tar.gz",
                170_052_171,
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            ),
            layout: "cifar-10-batches-bin/ with data_batch_1.bin … data_batch_5.bin, test_batch.bin, \
                     batches.meta.txt (records of 1 label byte + 3,072 pixel bytes)"
                .into(),
        },
    }
}

fn cifar100() -> Dataset {
    Dataset {
        name: "cifar100".into(),
        title: "CIFAR-100, binary version (50,000 + 10,000, 32x32 colour, 100 classes)".into(),
        licence: CIFAR_LICENCE.into(),
        source: Source::Download {
            files: cifar_archive(
                "cifar-100-binary.tar.gz",
                168_513_733,
                "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
            ),
            layout: "cifar-100-binary/ with train.bin, test.bin, coarse_label_names.txt, \
                     fine_label_names.txt (records of coarse and fine label bytes + 3,072 pixel bytes)"
                .into(),
        },
    }
}

fn imagenet32() -> Dataset {
    Dataset {
        name: "imagenet32".into(),
        title: "ImageNet 32x32, downsampled ImageNet (1,281,167 + 50,000 images, 1,000 classes)".into(),
        licence: "ImageNet terms of access: non-commercial research and education, after registration".into(),
        source: Source::Manual {
            instructions: "register at https://image-net.org (Download → Downsampled ImageNet) and \
                           download the npz variant, Imagenet32_train_npz.zip (the streams do not read \
                           the pickled Imagenet32_train.zip); clorch cannot accept the terms for you"
                .into(),
            layout: "unzip it so that this folder holds train_data_batch_1.npz … \
                     train_data_batch_10.npz (Imagenet32_val_npz.zip's val_data.npz may sit beside them)"
                .into(),
        },
    }
}

fn tiny_imagenet() -> Dataset {
    Dataset {
        name: "tiny-imagenet".into(),
        title: "Tiny ImageNet (100,000 + 10,000 images, 64x64 colour, 200 classes)".into(),
        licence: "its images are ImageNet's: the ImageNet terms of access apply \
                  (non-commercial research and education)"
            .into(),
        source: Source::Manual {
            instructions: "after reading the ImageNet terms of access (https://image-net.org), \
                           download http://cs231n.stanford.edu/tiny-imagenet-200.zip (Stanford \
                           CS231n)"
                .into(),
            layout: "unzip it into this folder: tiny-imagenet-200/ with wnids.txt, words.txt, \
                     train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt, \
                     test/images/*.JPEG"
                .into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_download_is_pinned() {
        let all = all();
        let mut names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for d in &all {
            match &d.source {
                Source::Download { files, .. } => {
                    assert!(!files.is_empty(), "{}", d.name);
                    for f in files {
                        assert_eq!(f.sha256.len(), 64, "{} {}", d.name, f.file_name);
                        assert!(f.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                        assert!(!f.urls.is_empty());
                        assert!(
                            f.urls.iter().all(|u| u.ends_with(&format!("/{}", f.file_name))),
                            "{:?}",
                            f.urls
                        );
                    }
                }
                Source::Manual { instructions, .. } => assert!(instructions.contains("http")),
            }
        }
    }

    #[test]
    fn mnist_files_are_the_ones_the_loader_reads() {
        let mnist = find("mnist").unwrap();
        let names: Vec<&str> = mnist.files().iter().map(|f| f.file_name.as_str()).collect();
        assert_eq!(names, IDX_FILES);
        assert!(mnist.files().iter().all(|f| f.unpack == Unpack::Keep));
        assert_eq!(find("fashion-mnist").unwrap().files().len(), 4);
        assert!(find("cifar10").unwrap().files().iter().all(|f| f.unpack == Unpack::TarGz));
        assert!(find("tiny-imagenet").unwrap().files().is_empty());
        assert!(find("mnist-10k").is_none());
    }
}
