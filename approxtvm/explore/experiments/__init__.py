"""The study's five experiments (DESIGN §7) on the shipped models, and energy-only on ResNet-50.

1. approximate multipliers in isolation (one multiplier on every layer),
2. NoC link swing in isolation (with and without protected MSBs),
3. SRAM voltage scaling of the input and weight buffers in isolation,
4. the combined NSGA-II Pareto set, and NSGA-II against a uniform grid and random search at the
   same evaluation budget over several seeds (hypervolume mean ± sd),
5. weight compression on the knee point of that Pareto set.

Every evaluation goes through one journal in the output folder, so running the experiments again
(or after an interruption) only evaluates what is missing. The accuracy effects of NoC swing and
SRAM voltage come from the runtime's fault injection: the experiments only compile each
configuration with its policy, so they pick up whatever the runtime models (the report says when
the runtime has no fault model and accuracy is therefore unaffected by those knobs).

Entry points: :func:`run_experiments` (compute + report) and :func:`write_report`.

One module per job: :mod:`.settings` (budgets and knob values), :mod:`.results` (what each
experiment yields), :mod:`.isolation` (experiments 1–3), :mod:`.pareto` (experiment 4 and the time
budget), :mod:`.compression` (experiment 5), :mod:`.sensitivity_section` (``--full``),
:mod:`.writer` (report files) and :mod:`.run` (the order, the journal, the executor).
"""

from approxtvm.explore.experiments.pareto import best_uniform_point
from approxtvm.explore.experiments.results import ExperimentsReport, ExperimentsResult, ParetoExperiment, Sweep
from approxtvm.explore.experiments.run import faults_modelled, run_experiments
from approxtvm.explore.experiments.settings import ExperimentSettings
from approxtvm.explore.experiments.writer import write_report

__all__ = [
    "ExperimentSettings",
    "ExperimentsReport",
    "ExperimentsResult",
    "ParetoExperiment",
    "Sweep",
    "best_uniform_point",
    "faults_modelled",
    "run_experiments",
    "write_report",
]
