"""The experiments' budgets and knob values (one frozen settings object, quick and full presets)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from approxtvm.explore.genome import DEFAULT_MULTIPLIERS
from approxtvm.explore.nsga import NsgaSettings
from approxtvm.explore.staged import StagingSettings


@dataclass(frozen=True, slots=True)
class ExperimentSettings:
    """Budgets and knob values of the five experiments.

    Attributes
    ----------
    models
        Shipped trained models evaluated for accuracy and energy.
    limit
        Test images per evaluation (0 = the whole digits test split).
    batch_size
        Compiled batch size.
    multipliers
        Multiplier library (experiment 1 and the genome): by default EvoApproxLib's unsigned
        power–MAE Pareto set plus exact (``genome.FAMILY_MULTIPLIERS`` for the project's families).
    max_distinct_multipliers
        At most this many multiplier types in the whole network in experiment 4 (``None``: no limit).
    comparison_seeds
        Seeds of the NSGA-II vs grid vs random comparison of experiment 4 (the first is also the
        seed of the reported NSGA-II run).
    swings_v
        Reduced NoC swings of experiment 2 (volts).
    swing_protected_msbs
        Protected-MSB settings compared in experiment 2.
    sram_v
        Reduced buffer voltages of experiment 3 (volts).
    nsga
        NSGA-II settings of experiment 4.
    pareto_model
        Model of experiments 4 and 5.
    resnet50_sweeps
        Which isolation sweeps also run energy-only on ResNet-50 (``()`` = none).
    compression_sparsity, compression_cluster_bits
        Pruning and clustering applied before compressing the knee point (experiment 5).
    knee_max_loss
        The representative (knee) point is chosen among the approximate Pareto points whose
        accuracy loss is at most this fraction (among all Pareto points if there are none).
    data, calibration
        Evaluation and calibration dataset specs of ``models`` (the user's prepared images, see
        :mod:`approxtvm.explore.userdata`; calibration ``None``: the digits training split for
        digits models, random inputs otherwise).
    staging
        Staged evaluation of the accuracy studies (:mod:`approxtvm.explore.staged`); ``None``:
        every configuration on every image.
    time_budget_s
        Wall-clock budget: experiment 4 runs as many generations as fit after experiments 1–3
        (``None``: ``nsga.generations``).
    sensitivity
        Also run the sensitivity section (``--full``).
    package_accelerator
        A spec with a ``package`` section (``simba_package_6x6``): experiment 2 then also sweeps
        the on-chip and the package link swing, separately and together, on ``pareto_model``
        (``None``: no package sweep).
    link_fractions
        Swings of that sweep as fractions of each link's nominal swing.
    link_protected_msbs
        MSBs of every word kept at full swing on the scaled links of that sweep.
    """

    models: tuple[str, ...] = ("digits_cnn", "digits_resnet")
    limit: int = 120
    batch_size: int = 8
    multipliers: tuple[str, ...] = DEFAULT_MULTIPLIERS
    max_distinct_multipliers: int | None = None
    comparison_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    swings_v: tuple[float, ...] = (0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
    swing_protected_msbs: tuple[int, ...] = (0, 4)
    sram_v: tuple[float, ...] = (0.8, 0.7, 0.6, 0.5)
    nsga: NsgaSettings = field(default_factory=lambda: NsgaSettings(pop_size=16, generations=6))
    pareto_model: str = "digits_cnn"
    resnet50_sweeps: tuple[str, ...] = ("multipliers",)
    compression_sparsity: float = 0.5
    compression_cluster_bits: int = 4
    knee_max_loss: float = 0.02
    data: str = "digits:test"
    calibration: str | None = None
    staging: StagingSettings | None = None
    time_budget_s: float | None = None
    sensitivity: bool = False
    package_accelerator: str | None = None
    link_fractions: tuple[float, ...] = (0.75, 0.6, 0.5, 0.4)
    link_protected_msbs: int = 0

    @staticmethod
    def quick(seed: int = 0) -> ExperimentSettings:
        """Minutes on two cores: 120 images, a 16 × 6 NSGA-II run, ResNet-50 multipliers only."""
        return ExperimentSettings(
            nsga=NsgaSettings(pop_size=16, generations=6, seed=seed),
            package_accelerator="simba_package_6x6",
            link_fractions=(0.6, 0.4),
        )

    @staticmethod
    def full(seed: int = 0) -> ExperimentSettings:
        """The whole test split, a 24 × 12 NSGA-II run, all three sweeps on ResNet-50."""
        return ExperimentSettings(
            limit=0,
            nsga=NsgaSettings(pop_size=24, generations=12, seed=seed),
            resnet50_sweeps=("multipliers", "noc_swing", "sram"),
            sensitivity=True,
            package_accelerator="simba_package_6x6",
        )

    def with_limit(self, limit: int) -> ExperimentSettings:
        """Same settings, another number of test images."""
        return replace(self, limit=limit)

    def without_resnet50(self) -> ExperimentSettings:
        """Same settings without the ResNet-50 sweeps."""
        return replace(self, resnet50_sweeps=())


__all__ = ["ExperimentSettings"]
