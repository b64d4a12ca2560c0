//! `clorch serve`: the live dashboard of one or more experiments.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::exit;

/// Arguments of `clorch serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Results folders to show (default: every experiment folder in ./results).
    pub results: Vec<PathBuf>,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on. Anything but a loopback address needs a token, which is
    /// generated and printed when --token is not given.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Token every request must carry (16–128 of [A-Za-z0-9_-]), or `generate` for a random
    /// one. The printed address carries it.
    #[arg(long)]
    pub token: Option<String>,
}

/// Serves until Ctrl-C.
pub fn run(args: &ServeArgs) -> i32 {
    let dirs = if args.results.is_empty() {
        match experiments_in(Path::new("results")) {
            Ok(dirs) if !dirs.is_empty() => dirs,
            Ok(_) | Err(_) => {
                eprintln!("clorch serve: no results folders given and no experiments in ./results");
                return exit::BAD_INPUT;
            }
        }
    } else {
        args.results.clone()
    };
    let token = match args.token.as_deref() {
        Some("generate") => Some(()),
        Some(_) => None,
        None if !args.bind.is_loopback() => Some(()),
        None => None,
    };
    let token = match token {
        Some(()) => match ::serve::generate_token() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("clorch serve: cannot generate a token: {e}");
                return exit::BAD_INPUT;
            }
        },
        None => args.token.clone(),
    };
    let config = ::serve::ServeConfig {
        dirs,
        bind: args.bind,
        port: args.port,
        token,
        refresh: Duration::from_millis(500),
    };
    let served = super::block_on(async move {
        let server = ::serve::Server::bind(config).await?;
        let n = server.experiments();
        // The address is the one line on standard output (scripts read it); a closed pipe
        // does not stop the server.
        let _ = crate::output::print(format_args!("clorch serve: {n} experiment(s) at {}\n", server.url()));
        eprintln!("(read-only; Ctrl-C stops it)");
        tokio::select! {
            () = server.run() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<_, ::serve::ServeError>(())
    });
    match served {
        Ok(Ok(())) => exit::OK,
        Ok(Err(e)) => {
            eprintln!("clorch serve: {e}");
            exit::BAD_INPUT
        }
        Err(e) => {
            eprintln!("clorch serve: {e}");
            exit::BAD_INPUT
        }
    }
}

/// The experiment folders directly inside `root`, in name order.
fn experiments_in(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| results::inspect_folder(p) == results::FolderState::Experiment)
        .collect();
    dirs.sort();
    Ok(dirs)
}
