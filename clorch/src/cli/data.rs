//! `clorch data`: the data sets the streams read, listed and downloaded.

use std::path::PathBuf;

use datasets::{catalogue, install, Downloader, Event, InstallError, Installed};
use indicatif::{ProgressBar, ProgressStyle};

use super::exit;

/// The environment variable that sets `--mirror` when the flag is absent.
pub const MIRROR_ENV: &str = "CLORCH_DATA_MIRROR";

/// `clorch data` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// The data sets clorch knows: name, download size, description, licence.
    List,
    /// Download a data set into `<dir>/<name>/`, verify every file's SHA-256, and unpack it
    /// into the layout the loaders read. A cut transfer is resumed by running the command
    /// again; a data set already there is verified and left as it is. For data sets behind a
    /// licence (imagenet32, tiny-imagenet) it says where to get them and the layout expected.
    Download(DownloadArgs),
}

/// Arguments of `clorch data download`.
#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// The data set (`clorch data list` names them).
    pub name: String,
    /// The folder the data set's own folder is created in; `data` (beside `recipes/`) is
    /// where the recipes' `data_dir: ../data/<name>` looks.
    #[arg(long, default_value = "data")]
    pub dir: PathBuf,
    /// For a local mirror: fetch each file from `<URL>/<name>/<file name>` instead of its
    /// publisher (checksums are verified all the same). Default: `$CLORCH_DATA_MIRROR`.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
}

/// Runs a `clorch data` subcommand.
pub fn run(command: &DataCommand) -> i32 {
    match command {
        DataCommand::List => list(),
        DataCommand::Download(args) => download(args),
    }
}

fn list() -> i32 {
    let mut text = String::new();
    for set in catalogue::all() {
        let size = match set.files().iter().map(|f| f.size).sum::<Option<u64>>() {
            Some(bytes) if !set.files().is_empty() => format!("{:.1} MB", bytes as f64 / 1e6),
            _ => "manual".to_string(),
        };
        text.push_str(&format!("{:<14} {:>9}  {}\n", set.name, size, set.title));
        text.push_str(&format!("{:<26}licence: {}\n", "", set.licence));
    }
    match crate::output::print(text) {
        Ok(()) => exit::OK,
        Err(e) => e.exit_code("data list"),
    }
}

fn download(args: &DownloadArgs) -> i32 {
    let Some(set) = catalogue::find(&args.name) else {
        eprintln!(
            "clorch data download: no data set `{}`; known: {}",
            args.name,
            catalogue::names().join(", ")
        );
        return exit::BAD_INPUT;
    };
    let mirror = args.mirror.clone().or_else(|| std::env::var(MIRROR_ENV).ok().filter(|m| !m.is_empty()));
    let mut bar = Progress::new(crate::logging::quiet());
    let result = install(&set, &args.dir, &Downloader::default(), mirror.as_deref(), &mut |e| bar.show(e));
    bar.clear();
    let (line, code) = match result {
        Ok(Installed::Downloaded { folder, files }) => (
            format!("downloaded {} into {} ({files} files, SHA-256 verified)\n", set.name, folder.display()),
            exit::OK,
        ),
        Ok(Installed::AlreadyPresent { folder, files }) => (
            format!("{} is already present in {} ({files} files, verified)\n", set.name, folder.display()),
            exit::OK,
        ),
        Err(e) => {
            eprintln!("clorch data download: {e}");
            return exit_code(&e);
        }
    };
    match crate::output::print(line) {
        Ok(()) => code,
        Err(e) => e.exit_code("data download"),
    }
}

/// Bad input for what the user can fix locally (a licensed data set, a folder in the way),
/// [`exit::UNAVAILABLE`] for what the network or the server did.
fn exit_code(e: &InstallError) -> i32 {
    match e {
        InstallError::Manual { .. }
        | InstallError::Foreign { .. }
        | InstallError::Changed { .. }
        | InstallError::Io { .. } => exit::BAD_INPUT,
        InstallError::Busy { .. } => exit::BUSY,
        InstallError::Offline { .. } | InstallError::Download(_) | InstallError::Unpack(_) => {
            exit::UNAVAILABLE
        }
    }
}

/// The progress bar on standard error: one per file, bytes against the file's size.
struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Progress { bar: None, quiet }
    }

    fn bar(&mut self) -> &ProgressBar {
        let quiet = self.quiet;
        self.bar.get_or_insert_with(|| {
            if quiet {
                return ProgressBar::hidden();
            }
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{msg} [{wide_bar}] {bytes:>9}/{total_bytes} {bytes_per_sec:>11}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        })
    }

    fn show(&mut self, event: Event) {
        match event {
            Event::Transfer { file, offset, total, .. } => {
                let bar = self.bar();
                bar.set_length(total.unwrap_or(0));
                bar.set_position(offset);
                bar.reset_eta();
                bar.set_message(if offset > 0 { format!("{file} (resumed)") } else { file.to_string() });
            }
            Event::Bytes { done, .. } => self.bar().set_position(done),
            Event::Verifying { file } => self.bar().set_message(format!("{file}: SHA-256")),
            Event::Reused { file } => self.bar().set_message(format!("{file}: verified earlier")),
            Event::Unpacking { file } => self.bar().set_message(format!("{file}: unpacking")),
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
