//! Recipes: the YAML file a researcher writes, validated and expanded into runs.
//!
//! A recipe names an experiment, its task stream(s), the network, the continual-learning
//! methods with hyper-parameter grids, the seeds and the evaluation, checkpoint and execution
//! settings; `recipes/README.md` documents every key. [`Recipe::load`] reads one, applies
//! command-line overrides (`key.path=value`), and checks it — with method and stream knowledge
//! from the worker crate through [`SpecChecker`] — reporting every problem at its file
//! position and key path ([`RecipeError`]). [`Recipe::expand`] turns it into [`PlannedRun`]s
//! whose ids are content hashes, so a re-run recognises the runs that already finished.
//!
//! Only the private `yaml` module names the YAML library; the rest works on a JSON tree and
//! [`KeyPath`]s, so the YAML crate can be swapped by rewriting that one file.

mod checker;
mod differences;
mod duration;
mod error;
mod expand;
mod file;
mod load;
mod messages;
mod overrides;
mod path;
mod sweep;
mod types;
mod yaml;

pub use checker::{ParamProblem, ParamSegment, SpecChecker, SpecProblem};
pub use differences::{differences, Difference};
pub use duration::{slurm_time, MAX_DURATION_SECONDS};
pub use error::{RecipeError, RecipeErrors};
pub use expand::{plan_table, PlannedRun};
pub use load::Multirun;
pub use load::MAX_PARALLEL;
pub use overrides::Override;
pub use path::{KeyPath, Segment};
pub use types::{MethodEntry, NamedStream, Recipe, SlurmSettings, SweepPoint};
