"""NSGA-II (pymoo) over the exploration genome, every evaluation through the journal.

The loop drives pymoo's ask/tell interface itself: each generation's genomes are decoded to
canonical configurations, evaluated by :func:`~approxtvm.explore.executors.evaluate_batch` (journal
first, then the executor) and told back **in genome order**. The algorithm's random state comes
from the seed alone and every decision depends only on journaled values, so a killed run started
again with the same arguments replays the same generations from the journal, evaluates only what
is missing and ends with the same Pareto set as an uninterrupted run.

Objectives (both minimised): accuracy loss — top-1 drop against the labels, or top-1
disagreement with the exact quantized model when the data has no labels — and energy per
inference. An optional accuracy-loss budget becomes the constraint ``loss − budget ≤ 0``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymoo.core.mutation import Mutation

from approxtvm.errors import ExplorationError
from approxtvm.explore.evaluator import EvalContext, EvalTask, StagePrior, make_task
from approxtvm.explore.executors import Executor, evaluate_batch
from approxtvm.explore.genome import (
    DEFAULT_MULTIPLIERS,
    DEFAULT_PROTECTED_MSBS,
    DEFAULT_SRAM_V,
    DEFAULT_SWINGS_V,
    Configuration,
    SearchSpace,
)
from approxtvm.explore.journal import EvalRecord, Journal


@dataclass(frozen=True, slots=True)
class Point:
    """One evaluated configuration in objective space.

    Attributes
    ----------
    config
        The configuration.
    key
        Its journal key.
    accuracy_loss
        Top-1 drop (labels) or disagreement with the exact model (no labels), as a fraction.
    energy_per_inference_pj
        Energy per inference (pJ).
    energy_rel
        Energy relative to the exact model.
    top1
        Top-1 accuracy (``None`` without labels).
    agreement
        Top-1 agreement with the exact model.
    """

    config: Configuration
    key: str
    accuracy_loss: float
    energy_per_inference_pj: float
    energy_rel: float
    top1: float | None
    agreement: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "label": self.config.label(),
            "config": self.config.to_dict(),
            "key": self.key,
            "accuracy_loss": self.accuracy_loss,
            "energy_per_inference_pj": self.energy_per_inference_pj,
            "energy_rel": self.energy_rel,
            "top1": self.top1,
            "agreement": self.agreement,
        }


@dataclass(frozen=True, slots=True)
class Reference:
    """The exact quantized model in the same context: the zero of accuracy loss and energy.

    Attributes
    ----------
    record
        Its journal record.
    """

    record: EvalRecord

    @property
    def layer_ids(self) -> tuple[str, ...]:
        """Offloaded layers in program order."""
        return tuple(self.record.detail["layer_ids"])

    def point(self, record: EvalRecord) -> Point:
        """Objective values of a record against this reference."""
        ref = self.record
        if ref.samples == 0:  # energy-only context
            agreement = 1.0
            loss = 0.0
        else:
            agreement = float(np.mean(record.predictions == ref.predictions))
            loss = (
                (ref.correct - record.correct) / ref.samples
                if ref.correct is not None and record.correct is not None
                else 1.0 - agreement
            )
        config = Configuration.from_dict(json.loads(record.config_json))
        return Point(
            config,
            record.key,
            float(loss),
            record.energy_per_inference_pj,
            record.energy_per_inference_pj / ref.energy_per_inference_pj,
            record.top1,
            agreement,
        )


def pareto_front(points: Sequence[Point], budget: float | None = None) -> list[Point]:
    """Non-dominated points (minimising loss and energy), sorted by energy then loss then config.

    Points with equal objectives are all kept (in canonical config order); with ``budget``, points
    whose loss exceeds it are dropped first.
    """
    pts = [p for p in points if budget is None or p.accuracy_loss <= budget + 1e-12]
    uniq: dict[str, Point] = {p.key: p for p in pts}
    ordered = sorted(uniq.values(), key=lambda p: (p.energy_per_inference_pj, p.accuracy_loss, p.config.to_json()))
    front: list[Point] = []
    best_loss = np.inf
    for p in ordered:
        if p.accuracy_loss < best_loss:
            front.append(p)
            best_loss = p.accuracy_loss
        elif (
            front
            and p.accuracy_loss == front[-1].accuracy_loss
            and p.energy_per_inference_pj == front[-1].energy_per_inference_pj
        ):
            front.append(p)  # same objectives as a front point: equally good
    return front


def hypervolume(points: Sequence[Point], ref_loss: float = 1.0, ref_energy_rel: float = 1.0) -> float:
    """Area dominated by ``points`` in (accuracy loss, relative energy), bounded by the reference point."""
    xs = sorted(
        {
            (p.energy_rel, p.accuracy_loss)
            for p in points
            if p.energy_rel < ref_energy_rel and p.accuracy_loss < ref_loss
        }
    )
    area, best = 0.0, ref_loss
    for i, (e, loss) in enumerate(xs):
        if loss < best:
            best = loss
        nxt = xs[i + 1][0] if i + 1 < len(xs) else ref_energy_rel
        area += (nxt - e) * (ref_loss - best)
    return float(area)


@dataclass(frozen=True, slots=True)
class NsgaSettings:
    """Settings of one NSGA-II run.

    Attributes
    ----------
    pop_size
        Population size (see :func:`initial_population` for the first generation).
    generations
        Generations, the initial population included.
    seed
        Seed of the algorithm and of the random part of the initial population.
    accuracy_budget
        Largest acceptable accuracy loss (fraction), or ``None`` for no constraint.
    crossover_eta, mutation_eta
        Distribution indices of SBX crossover and polynomial mutation on the gene indices
        (small = large jumps between library entries).
    operators
        ``"sbx"``: SBX + polynomial mutation on the (ordered) gene indices; ``"uniform"``: uniform
        crossover + random-reset mutation (genes as categories).
    """

    pop_size: int = 16
    generations: int = 8
    seed: int = 0
    accuracy_budget: float | None = None
    crossover_eta: float = 3.0
    mutation_eta: float = 3.0
    operators: str = "sbx"

    def __post_init__(self) -> None:
        if self.pop_size < 2 or self.generations < 1:
            raise ExplorationError(
                "NSGA-II settings out of range",
                expected="pop_size ≥ 2 and generations ≥ 1",
                found=f"pop_size={self.pop_size}, generations={self.generations}",
                fix="use a larger population or more generations",
            )
        if self.operators not in ("sbx", "uniform"):
            raise ExplorationError(
                f"unknown NSGA-II operators {self.operators!r}",
                expected="sbx or uniform",
                found=self.operators,
                fix="pick one of the two",
            )
        if self.accuracy_budget is not None and not 0 <= self.accuracy_budget <= 1:
            raise ExplorationError(
                "accuracy budget out of range",
                expected="a fraction in [0, 1]",
                found=str(self.accuracy_budget),
                fix="e.g. 0.01 for one percentage point",
            )


@dataclass(frozen=True, slots=True)
class GenerationInfo:
    """Progress of a run after one generation.

    Attributes
    ----------
    generation
        1-based generation number.
    generations
        Generations planned.
    evaluations
        Distinct configurations evaluated or found in the journal so far.
    new_evaluations
        Of those, evaluated in this process run.
    hypervolume
        Hypervolume of the front so far.
    elapsed_s, eta_s
        Wall time so far and estimated time to finish (s).
    """

    generation: int
    generations: int
    evaluations: int
    new_evaluations: int
    hypervolume: float
    elapsed_s: float
    eta_s: float


@dataclass(frozen=True)
class ExploreResult:
    """Outcome of an exploration.

    Attributes
    ----------
    space
        The search space.
    reference
        The exact model's point.
    points
        Every distinct evaluated configuration, in first-evaluation order.
    pareto
        The Pareto set (feasible points only when there is a budget).
    uniform
        Points of the uniform-multiplier seeds.
    settings
        The settings of the run.
    history
        Progress after each generation.
    """

    space: SearchSpace
    reference: Point
    points: list[Point]
    pareto: list[Point]
    uniform: list[Point]
    settings: NsgaSettings
    history: list[GenerationInfo] = field(default_factory=list)

    @property
    def hypervolume(self) -> float:
        """Hypervolume of the Pareto set."""
        return hypervolume(self.pareto)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (the Pareto set, the uniform baselines, the settings)."""
        return {
            "space": self.space.to_dict(),
            "settings": {
                "pop_size": self.settings.pop_size,
                "generations": self.settings.generations,
                "seed": self.settings.seed,
                "accuracy_budget": self.settings.accuracy_budget,
            },
            "reference": self.reference.to_dict(),
            "evaluations": len(self.points),
            "hypervolume": self.hypervolume,
            "pareto": [p.to_dict() for p in self.pareto],
            "uniform": [p.to_dict() for p in self.uniform],
        }


class Study:
    """One evaluation context bound to a journal and an executor.

    Parameters
    ----------
    context
        What is evaluated (model, data, batch size, seed).
    journal
        Where evaluations are memoised.
    executor
        Where evaluations run.
    on_record
        Called with every newly evaluated record.
    fingerprint
        ``context.fingerprint()`` if already known (computing it loads the model and the data).
    """

    def __init__(
        self,
        context: EvalContext,
        journal: Journal,
        executor: Executor,
        on_record: Callable[[EvalRecord], None] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.context = context
        self.journal = journal
        self.executor = executor
        self.on_record = on_record
        self.fingerprint = fingerprint or context.fingerprint()
        self.new_evaluations = 0
        self._reference: Reference | None = None

    def _count(self, rec: EvalRecord) -> None:
        self.new_evaluations += 1
        if self.on_record is not None:
            self.on_record(rec)

    def records(
        self, configs: Sequence[Configuration], priors: Mapping[Configuration, StagePrior] | None = None
    ) -> list[EvalRecord]:
        """Records of ``configs`` (journal first, then the executor), in order; ``priors``: their
        predictions on an earlier stage, if any (:attr:`EvalTask.prior`; the records are the same)."""
        priors = priors or {}
        tasks: list[EvalTask] = [make_task(self.context, self.fingerprint, c, priors.get(c)) for c in configs]
        recs, _ = evaluate_batch(tasks, self.journal, self.executor, self._count)
        return recs

    @property
    def reference(self) -> Reference:
        """The exact model in this context (evaluated on first use)."""
        if self._reference is None:
            self._reference = Reference(self.records([Configuration()])[0])
        return self._reference

    def points(self, configs: Sequence[Configuration]) -> list[Point]:
        """Objective values of ``configs``, in order."""
        ref = self.reference
        return [ref.point(r) for r in self.records(configs)]

    def resolve(self) -> None:
        """Settle every configuration left undecided by earlier :meth:`points` calls (nothing
        here: a plain study evaluates each on the whole set at once; a staged study may defer)."""

    def space(
        self,
        multipliers: Sequence[str] = DEFAULT_MULTIPLIERS,
        swings_v: Sequence[float | None] = DEFAULT_SWINGS_V,
        input_buffer_v: Sequence[float] = DEFAULT_SRAM_V,
        weight_buffer_v: Sequence[float] = DEFAULT_SRAM_V,
        protected_msbs: Sequence[int] = DEFAULT_PROTECTED_MSBS,
        max_distinct_multipliers: int | None = None,
    ) -> SearchSpace:
        """A search space over this model's layers (see :class:`SearchSpace`)."""
        return SearchSpace(
            self.reference.layer_ids,
            tuple(multipliers),
            tuple(swings_v),
            tuple(input_buffer_v),
            tuple(weight_buffer_v),
            tuple(protected_msbs),
            max_distinct_multipliers,
        )


def initial_population(space: SearchSpace, pop_size: int, seed: int) -> np.ndarray:
    """``pop_size`` distinct genomes: uniform-multiplier seeds on at most half, seeded random
    genomes on the rest.

    The seeds are evenly spaced in library order (power order: the first, most accurate, and the
    last, cheapest, included) at nominal knobs. At most half of the first generation goes to them
    because they all sit at nominal voltages, where crossover among them cannot reach the swing
    and buffer-voltage genes: with every one of a 22-multiplier library seeded into a population of
    6, two thirds of a 34-evaluation budget went to the seeds and NSGA-II's hypervolume fell below
    random search's on all five seeds (``bench_search_comparison.py``). The uniform baselines are
    evaluated in any case (:func:`run_nsga`), outside the search's own points.
    """
    rows: list[tuple[int, ...]] = []
    configs: set[Configuration] = set()
    seeds = space.uniform_genomes()
    n_seeds = min(len(seeds), max(1, pop_size // 2))
    for i in np.unique(np.rint(np.linspace(0, len(seeds) - 1, n_seeds)).astype(np.int64)):
        c = space.decode(seeds[i])
        if c not in configs:
            rows.append(tuple(int(v) for v in seeds[i]))
            configs.add(c)
    rng = np.random.default_rng([seed, 0x5EED])
    upper = space.upper
    attempts = 0
    while len(rows) < pop_size and attempts < 100 * pop_size:
        g = tuple(int(v) for v in rng.integers(0, upper + 1))
        attempts += 1
        if space.decode(g) not in configs:
            rows.append(g)
            configs.add(space.decode(g))
    return np.array(rows, dtype=np.int64)


class ResetMutation(Mutation):
    """Random-reset mutation for categorical genes: each gene, with probability ``prob_var``
    (default ``1/n_var``), takes a uniformly random value between its bounds."""

    def _do(self, problem: Any, X: np.ndarray, *args: Any, random_state: Any = None, **kwargs: Any) -> np.ndarray:
        X = np.array(X, dtype=float, copy=True)
        p = self.get_prob_var(problem, size=len(X))
        mask = random_state.random(X.shape) < np.reshape(p, (-1, 1))
        new = random_state.integers(0, np.asarray(problem.xu, dtype=np.int64) + 1, size=X.shape)
        X[mask] = new[mask]
        return X


def run_nsga(
    study: Study,
    space: SearchSpace,
    settings: NsgaSettings,
    on_generation: Callable[[GenerationInfo], None] | None = None,
) -> ExploreResult:
    """Run NSGA-II; every evaluation goes through the study's journal.

    Parameters
    ----------
    study
        Context, journal and executor.
    space
        Genome definition (built with :meth:`Study.space`).
    settings
        Population, generations, seed, optional accuracy budget.
    on_generation
        Called after every generation with progress information.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.problems.static import StaticProblem

    budget = settings.accuracy_budget
    problem = Problem(
        n_var=space.n_var,
        n_obj=2,
        n_ieq_constr=0 if budget is None else 1,
        xl=np.zeros(space.n_var),
        xu=space.upper.astype(float),
        vtype=int,
    )
    if settings.operators == "uniform":
        from pymoo.operators.crossover.ux import UX

        crossover: Any = UX()
        mutation: Any = ResetMutation()
    else:
        crossover = SBX(prob=0.9, eta=settings.crossover_eta, vtype=float, repair=RoundingRepair())
        mutation = PM(eta=settings.mutation_eta, vtype=float, repair=RoundingRepair())
    algorithm = NSGA2(
        pop_size=settings.pop_size,
        sampling=initial_population(space, settings.pop_size, settings.seed).astype(float),
        crossover=crossover,
        mutation=mutation,
        eliminate_duplicates=True,
    )
    algorithm.setup(problem, termination=("n_gen", settings.generations), seed=settings.seed, verbose=False)

    ref = study.reference
    t0 = time.perf_counter()
    # the uniform-multiplier baselines, first: generation 1's count of new evaluations includes them
    uniform = study.points([space.decode(g) for g in space.uniform_genomes()])
    seen: dict[Configuration, Point] = {}  # each configuration's latest point
    history: list[GenerationInfo] = []
    gen = 0
    while algorithm.has_next():
        pop = algorithm.ask()
        X = np.stack([space.repair(x) for x in np.rint(pop.get("X")).astype(np.int64)])
        pop.set("X", X.astype(float))  # the population carries what is evaluated (k-distinct repair)
        configs = [space.decode(x) for x in X]
        pts = study.points(configs)  # a StagedStudy screens them in stages
        seen.update(zip(configs, pts, strict=True))
        F = np.array([[p.accuracy_loss, p.energy_rel] for p in pts], dtype=float)
        kw: dict[str, Any] = {"F": F}
        if budget is not None:
            kw["G"] = np.array([[p.accuracy_loss - budget] for p in pts], dtype=float)
        Evaluator().eval(StaticProblem(problem, **kw), pop)
        algorithm.tell(infills=pop)
        gen += 1
        elapsed = time.perf_counter() - t0
        info = GenerationInfo(
            gen,
            settings.generations,
            len(seen),
            study.new_evaluations,
            hypervolume(pareto_front(list(seen.values()), budget)),
            elapsed,
            elapsed / gen * (settings.generations - gen),
        )
        history.append(info)
        if on_generation is not None:
            on_generation(info)
    # a staged study may have left configurations at a stage estimate: settle them, then take
    # every configuration's final point (the front of stale estimates would not be exact)
    study.resolve()
    points = study.points(list(seen))
    return ExploreResult(space, ref.point(ref.record), points, pareto_front(points, budget), uniform, settings, history)


def uniform_grid(space: SearchSpace, budget: int, seed: int) -> list[Configuration]:
    """Uniform configurations (one value of each knob for all layers): every uniform-multiplier
    configuration, then a seeded sample of the rest of the uniform grid, ``budget`` in total."""
    nl = len(space.layer_ids)
    first = [space.decode(g) for g in space.uniform_genomes()]
    grid = []
    for m in range(len(space.multipliers)):
        for s in range(len(space.swings_v)):
            for i in range(len(space.input_buffer_v)):
                for w in range(len(space.weight_buffer_v)):
                    for p in range(len(space.protected_msbs)):
                        grid.append(space.decode([m] * nl + [s, i, w, p]))
    uniq = list(dict.fromkeys(c for c in grid if c not in first))
    rng = np.random.default_rng([seed, 0x6121D])
    rest = [uniq[i] for i in rng.permutation(len(uniq))]
    return (first + rest)[: max(budget, len(first))]
