//! `clorch export`: an experiment's results in other tools' formats.

use std::path::PathBuf;

use super::exit;

/// What to export to.
#[derive(Debug, clap::Subcommand)]
pub enum ExportCommand {
    /// TensorBoard event files, one folder per run named by method, grid point, seed and run
    /// id: online accuracy and loss, per-task accuracy, ACC / BWT / forgetting after each
    /// task, plasticity diagnostics. Open with `tensorboard --logdir <out>`.
    Tensorboard(TensorboardArgs),
}

/// Arguments of `clorch export tensorboard`.
#[derive(Debug, clap::Args)]
pub struct TensorboardArgs {
    /// The results folder.
    pub results: PathBuf,
    /// Folder to write (default: `<results>/tensorboard`). It must not exist, be empty, or
    /// hold an earlier export, which is replaced.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs an export.
pub fn run(command: &ExportCommand) -> i32 {
    match command {
        ExportCommand::Tensorboard(args) => tensorboard(args),
    }
}

fn tensorboard(args: &TensorboardArgs) -> i32 {
    let store = match super::report::open_store("export tensorboard", &args.results) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let out = args.out.clone().unwrap_or_else(|| args.results.join("tensorboard"));
    match report::tensorboard::export(&store, &out) {
        Ok(done) => {
            let printed = crate::output::print(format_args!(
                "wrote {} scalars of {} runs to {}\nview them with: tensorboard --logdir {}\n",
                done.scalars,
                done.runs,
                done.dir.display(),
                done.dir.display()
            ));
            match printed {
                Ok(()) => exit::OK,
                Err(e) => e.exit_code("export tensorboard"),
            }
        }
        Err(e) => {
            eprintln!("clorch export tensorboard: {e}");
            exit::BAD_INPUT
        }
    }
}
