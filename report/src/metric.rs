//! The per-run metrics a report can show, with their names and which direction is better.

use std::fmt;
use std::str::FromStr;

/// Which way a metric improves; decides the best value marked in each column and the order of
/// `sort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Larger is better (accuracy, transfer, effective rank).
    Higher,
    /// Smaller is better (forgetting, dead units, loss).
    Lower,
    /// Neither: a diagnostic, no best value is marked.
    Neither,
}

/// A number computed per run (see `report::summary` for how each is computed from events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// ACC = (1/T) Σ_j R\[T−1\]\[j\].
    Acc,
    /// BWT = 1/(T−1) Σ_{j<T−1} (R\[T−1\]\[j\] − R\[j\]\[j\]).
    Bwt,
    /// FWT = 1/(T−1) Σ_{j≥1} (R\[j−1\]\[j\] − b_j).
    Fwt,
    /// Average forgetting (Chaudhry et al. 2018), divided by T − 1.
    Forgetting,
    /// Online accuracy of the last task's last bin.
    FinalOnlineAcc,
    /// Mean over tasks of each task's last-bin online accuracy.
    MeanOnlineAcc,
    /// The last task's online loss (example-weighted mean over its bins).
    FinalOnlineLoss,
    /// Online loss over the whole stream (example-weighted mean over all bins).
    MeanOnlineLoss,
    /// Dead-unit fraction at the last plasticity measurement, averaged over hidden layers.
    Dead,
    /// Change of [`Metric::Dead`] from the first plasticity measurement to the last.
    DeadChange,
    /// Effective rank at the last plasticity measurement, averaged over hidden layers.
    EffectiveRank,
    /// Change of [`Metric::EffectiveRank`] from the first measurement to the last.
    EffectiveRankChange,
    /// Mean |w| over all weight matrices at the last plasticity measurement.
    MeanAbsWeight,
    /// Change of [`Metric::MeanAbsWeight`] from the first measurement to the last.
    MeanAbsWeightChange,
    /// Wall-clock seconds the run's attempts took, when recorded.
    WallSeconds,
}

impl Metric {
    /// Every metric, in table order.
    pub const ALL: [Metric; 15] = [
        Metric::Acc,
        Metric::Bwt,
        Metric::Fwt,
        Metric::Forgetting,
        Metric::FinalOnlineAcc,
        Metric::MeanOnlineAcc,
        Metric::FinalOnlineLoss,
        Metric::MeanOnlineLoss,
        Metric::Dead,
        Metric::DeadChange,
        Metric::EffectiveRank,
        Metric::EffectiveRankChange,
        Metric::MeanAbsWeight,
        Metric::MeanAbsWeightChange,
        Metric::WallSeconds,
    ];

    /// The metrics a report shows when none are chosen (then narrowed to those with values;
    /// the online-loss ones only for regression streams).
    pub const DEFAULT: [Metric; 10] = [
        Metric::Acc,
        Metric::Bwt,
        Metric::Fwt,
        Metric::Forgetting,
        Metric::FinalOnlineAcc,
        Metric::MeanOnlineAcc,
        Metric::FinalOnlineLoss,
        Metric::MeanOnlineLoss,
        Metric::Dead,
        Metric::EffectiveRank,
    ];

    /// Position in [`Metric::ALL`], for per-metric arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric's name: the stem of its machine-readable column names (`acc_mean`, …) and
    /// what `--metrics`, `--sort` and friends accept.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::Bwt => "bwt",
            Metric::Fwt => "fwt",
            Metric::Forgetting => "forgetting",
            Metric::FinalOnlineAcc => "final_online_acc",
            Metric::MeanOnlineAcc => "mean_online_acc",
            Metric::FinalOnlineLoss => "final_online_loss",
            Metric::MeanOnlineLoss => "mean_online_loss",
            Metric::Dead => "dead",
            Metric::DeadChange => "dead_change",
            Metric::EffectiveRank => "effective_rank",
            Metric::EffectiveRankChange => "effective_rank_change",
            Metric::MeanAbsWeight => "mean_abs_weight",
            Metric::MeanAbsWeightChange => "mean_abs_weight_change",
            Metric::WallSeconds => "wall_seconds",
        }
    }

    /// The column header in Markdown tables.
    pub fn header(self) -> &'static str {
        match self {
            Metric::Acc => "ACC",
            Metric::Bwt => "BWT",
            Metric::Fwt => "FWT",
            Metric::Forgetting => "Forgetting",
            Metric::FinalOnlineAcc => "Final online acc.",
            Metric::MeanOnlineAcc => "Mean online acc.",
            Metric::FinalOnlineLoss => "Final online loss",
            Metric::MeanOnlineLoss => "Mean online loss",
            Metric::Dead => "Dead units",
            Metric::DeadChange => "Δ dead units",
            Metric::EffectiveRank => "Eff. rank",
            Metric::EffectiveRankChange => "Δ eff. rank",
            Metric::MeanAbsWeight => "Mean abs. weight",
            Metric::MeanAbsWeightChange => "Δ mean abs. weight",
            Metric::WallSeconds => "Wall time (s)",
        }
    }

    /// The column header in LaTeX tables.
    pub fn latex_header(self) -> &'static str {
        match self {
            Metric::DeadChange => r"$\Delta$ dead units",
            Metric::EffectiveRankChange => r"$\Delta$ eff.\ rank",
            Metric::MeanAbsWeight => r"Mean $|w|$",
            Metric::MeanAbsWeightChange => r"$\Delta$ mean $|w|$",
            Metric::EffectiveRank => r"Eff.\ rank",
            Metric::FinalOnlineAcc => r"Final online acc.",
            Metric::MeanOnlineAcc => r"Mean online acc.",
            other => other.header(),
        }
    }

    /// Which way the metric improves.
    pub fn better(self) -> Better {
        match self {
            Metric::Acc
            | Metric::Bwt
            | Metric::Fwt
            | Metric::FinalOnlineAcc
            | Metric::MeanOnlineAcc
            | Metric::EffectiveRank
            | Metric::EffectiveRankChange => Better::Higher,
            Metric::Forgetting
            | Metric::FinalOnlineLoss
            | Metric::MeanOnlineLoss
            | Metric::Dead
            | Metric::DeadChange => Better::Lower,
            Metric::MeanAbsWeight | Metric::MeanAbsWeightChange | Metric::WallSeconds => Better::Neither,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metric name that is not one of [`Metric::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric `{name}`; expected one of: {}", known_metrics())]
pub struct UnknownMetric {
    /// The name given.
    pub name: String,
}

fn known_metrics() -> String {
    Metric::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}

impl FromStr for Metric {
    type Err = UnknownMetric;

    /// Parses a metric name ([`Metric::name`]), ignoring case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Metric::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownMetric { name: s.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_index_matches_order() {
        for (i, m) in Metric::ALL.into_iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(m.name().parse::<Metric>().unwrap(), m);
            assert_eq!(m.name().to_uppercase().parse::<Metric>().unwrap(), m);
        }
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = "accuracy".parse::<Metric>().unwrap_err().to_string();
        assert!(err.starts_with("unknown metric `accuracy`; expected one of: acc, bwt"), "{err}");
    }

    #[test]
    fn directions_follow_the_literature() {
        assert_eq!(Metric::Forgetting.better(), Better::Lower);
        assert_eq!(Metric::Bwt.better(), Better::Higher);
        assert_eq!(Metric::Dead.better(), Better::Lower);
        assert_eq!(Metric::EffectiveRank.better(), Better::Higher);
        assert_eq!(Metric::MeanOnlineLoss.better(), Better::Lower);
        assert_eq!(Metric::MeanAbsWeight.better(), Better::Neither);
    }
}
