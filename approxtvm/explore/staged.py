"""Staged evaluation (racing): screen configurations on small stratified subsets, evaluate on
more images only those that can still reach the Pareto front, and the front always on the full set.

A batch of configurations (an NSGA-II generation, a sweep) runs through stages of growing size
``n_0 < n_1 < … < N`` (``n_i = first · growthⁱ`` rounded up to whole batches, the last stage is
the whole evaluation set). Stage subsets are prefixes of one label-stratified order
(:mod:`approxtvm.explore.subsets`), run in that order (:mod:`approxtvm.explore.stage_runs`): a
configuration's later stage runs only the images it adds, faulty or not. Each stage is its own
evaluation context, so the journal stores every stage's result (and a resumed run replays them).
After each stage, every configuration gets a confidence interval on its accuracy loss:

``loss ± z · sqrt(p / n) · sqrt((N − n) / (N − 1))``

where ``loss`` is measured against the exact model on the same ``n`` samples, ``p`` is the
(Laplace-smoothed) fraction of those samples on which the two disagree — the per-sample loss
difference is in {−1, 0, 1} and non-zero only where they disagree, so ``p`` bounds its variance —
and the last factor is the finite-population correction (the interval is a point at ``n = N``).
Energy per inference does not depend on the images, so it is known after the first stage.

A configuration is dropped when another one (of this batch, or any earlier one) has no more
energy and loses less accuracy with confidence — it is then dominated and cannot be on the front;
with an accuracy budget, also when its lower bound exceeds the budget. "Loses less with
confidence" is either test:

- unpaired: the other's upper loss bound is below this one's lower bound;
- paired (:func:`paired_loss_gap`): on the samples both have run, the per-sample difference of
  their correctness ``d ∈ {−1, 0, 1}`` has mean ``d̄`` (the difference of their losses on those
  samples) and variance at most ``p``, the (Laplace-smoothed) fraction of samples on which they
  differ; the other loses less when ``d̄ > z · sqrt(p / m) · sqrt((N − m) / (N − 1))``. Two
  configurations that err on the same samples differ on few, so their loss gap is resolved on
  far fewer samples than two independent intervals resolve it (their widths add up).

The survivors go on to the next stage. Dropped configurations report their last estimate.

Deferral (``StagingSettings.defer``, on by default): a survivor whose estimate another estimate of
the pool dominates outright (no more energy, no more loss, one of them less; no confidence) does not
go on at once but waits at its stage. A search's early batches meet a poor pool, so the eager rule
takes many configurations to the full set that the later, better front dominates by far (on the
digits models, most full-set configurations off the final front lost 10–50 pp more than a
front point of no more energy). Each later batch re-tests the waiting ones against the grown pool
on the images they already ran, drops those now dominated with confidence, and takes on those no
estimate dominates any more; :meth:`StagedStudy.resolve`, which a search calls at its end, takes
every one still undecided on as the eager rule would. A configuration is thus skipped only when
dominated with confidence, as before: only the moment of the decision moves.

With a loss resolution ``ε > 0`` (opt-in), a configuration is also dropped when a configuration
already evaluated on the full set, with no more energy, loses at most ``ε`` more with confidence
(``loss_q − loss_low < ε``, or the paired ``d̄ > half − ε``). Only full-set configurations serve
as such dominators, and they are never dropped, so the approximations do not chain: every
configuration of the unstaged front has a point of the returned front with no more energy and at
most ``ε`` more loss (w.h.p.). A 1,000-image set measures top-1 with a standard error of about
1.4 pp at 75 %, so an ``ε`` below that gives up no precision the data had.

Finally, every configuration on the front of everything seen so far that was not evaluated on the
full set is evaluated on it, repeatedly until the front consists of full-set evaluations only: the
front a staged study returns is exact, and it equals the unstaged front unless a confidence bound
failed for a configuration that was dropped (probability ≲ the one-sided tail of ``z``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from approxtvm.errors import ExplorationError
from approxtvm.explore.evaluator import EvalContext, StagePrior, load_context_data
from approxtvm.explore.executors import Executor
from approxtvm.explore.genome import Configuration
from approxtvm.explore.journal import EvalRecord, Journal
from approxtvm.explore.nsga import Point, Study, pareto_front
from approxtvm.explore.stage_runs import reusable_prefix
from approxtvm.explore.subsets import stratified_indices


@dataclass(frozen=True, slots=True)
class StagingSettings:
    """Stage sizes and the confidence of the screening.

    Attributes
    ----------
    first_samples
        Samples of the first stage.
    growth
        Factor between consecutive stage sizes (≥ 2).
    z
        One-sided normal quantile of the loss bounds (2.33 ≈ 99 %).
    resolution
        Accuracy-loss resolution ε (fraction; 0 = the exact front). With ε > 0 a configuration is
        also dropped when a configuration already evaluated on the full set, with no more energy,
        loses at most ε more with confidence: the returned front then covers the unstaged one to
        within ε of loss at no more energy (see the module docstring).
    defer
        Whether a survivor of a stage whose estimate another estimate dominates outright (without
        confidence) waits at that stage instead of going on at once: later batches bring a better
        pool, against which most of them are then dominated with confidence, on the images they
        already ran. :meth:`StagedStudy.resolve` takes every one still undecided on, so the
        guarantee on the front is the same; ``False`` is the eager rule.
    """

    first_samples: int = 100
    growth: int = 4
    z: float = 2.33
    resolution: float = 0.0
    defer: bool = True

    def __post_init__(self) -> None:
        if self.first_samples < 1 or self.growth < 2 or not self.z > 0 or not 0 <= self.resolution < 1:
            raise ExplorationError(
                "invalid staging settings",
                expected="first_samples ≥ 1, growth ≥ 2, z > 0, 0 ≤ resolution < 1",
                found=f"first_samples={self.first_samples}, growth={self.growth}, z={self.z}, "
                f"resolution={self.resolution}",
                fix="e.g. StagingSettings(100, 4) for the exact front, resolution=0.01 for 1 pp",
            )

    def sizes(self, total: int, batch_size: int = 1) -> list[int]:
        """Stage sizes for a set of ``total`` samples (the last is ``total``): ``first · growthⁱ``
        rounded up to whole batches of ``batch_size``, so a later stage of a configuration that
        draws faults can reuse the earlier one (:mod:`approxtvm.explore.stage_runs`)."""
        out: list[int] = []
        n = self.first_samples
        while (m := -(-n // batch_size) * batch_size) < total:
            if not out or m > out[-1]:
                out.append(m)
            n *= self.growth
        return [*out, total]


@dataclass(frozen=True, slots=True)
class Estimate:
    """A configuration's objective estimate after a stage.

    Attributes
    ----------
    point
        Objective values on the stage's samples (loss against the exact model on the same ones).
    samples
        Samples of the stage.
    loss_low, loss_high
        Confidence bounds on the full-set accuracy loss.
    """

    point: Point
    samples: int
    loss_low: float
    loss_high: float


@dataclass
class StagingStats:
    """Compute a staged study used, against evaluating every configuration on the full set.

    Attributes
    ----------
    configurations
        Distinct configurations estimated.
    full_evaluations
        Of those, evaluated on the full set.
    samples_run
        Images evaluated over all stages (journaled results included): a later stage counts
        only the images it adds (the worker merges the earlier stage's predictions,
        :class:`~approxtvm.explore.evaluator.StagePrior`).
    samples_unstaged
        Images an unstaged study would have evaluated (``configurations × N``).
    eval_s, eval_s_unstaged
        Worker seconds (compile + run) of the records used, and an estimate of the unstaged
        seconds: each configuration's first-stage time (its compile included) plus the remaining
        images at its per-image rate, measured on its later stages (their compiled model usually
        comes from the worker's cache) or, for a configuration dropped after its first stage, the
        median rate of the others (the exact model's full-set rate when there is none), so
        compile time is not scaled up.
    by_stage
        Evaluations per stage size.
    """

    configurations: int = 0
    full_evaluations: int = 0
    samples_run: int = 0
    samples_unstaged: int = 0
    eval_s: float = 0.0
    eval_s_unstaged: float = 0.0
    by_stage: dict[int, int] = field(default_factory=dict)

    @property
    def sample_savings(self) -> float:
        """Fraction of image evaluations saved."""
        return 0.0 if not self.samples_unstaged else 1.0 - self.samples_run / self.samples_unstaged

    @property
    def time_savings(self) -> float:
        """Fraction of worker time saved (compile time included)."""
        return 0.0 if not self.eval_s_unstaged else 1.0 - self.eval_s / self.eval_s_unstaged

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return {
            "configurations": self.configurations,
            "full_evaluations": self.full_evaluations,
            "samples_run": self.samples_run,
            "samples_unstaged": self.samples_unstaged,
            "sample_savings": self.sample_savings,
            "eval_s": self.eval_s,
            "eval_s_unstaged": self.eval_s_unstaged,
            "time_savings": self.time_savings,
            "by_stage": {str(k): v for k, v in sorted(self.by_stage.items())},
        }


def loss_bounds(point: Point, samples: int, total: int, z: float) -> tuple[float, float]:
    """Confidence bounds on the full-set loss from a stage estimate (see the module docstring)."""
    if samples >= total:
        return point.accuracy_loss, point.accuracy_loss
    disagree = round((1.0 - point.agreement) * samples)
    p = (disagree + 1.0) / (samples + 2.0)
    half = z * math.sqrt(p / samples) * math.sqrt((total - samples) / max(1, total - 1))
    return point.accuracy_loss - half, point.accuracy_loss + half


def paired_loss_gap(correct_a: np.ndarray, correct_b: np.ndarray, total: int, z: float) -> tuple[float, float]:
    """Paired estimate of ``loss(b) − loss(a)`` on ``total`` samples from their correctness on
    the same ``m`` samples, and its confidence half-width (see the module docstring).

    Parameters
    ----------
    correct_a, correct_b
        Per-sample correctness (bool, the same samples in the same order) of the two
        configurations: top-1 right, or agreement with the exact model when there are no labels.
    total
        Size of the whole set the gap is about (the finite-population correction).
    z
        One-sided normal quantile.

    Returns
    -------
    tuple
        ``(gap, half_width)``: ``b`` loses more than ``a`` with confidence when ``gap > half_width``.
    """
    m = int(correct_a.size)
    if m == 0:
        return 0.0, math.inf
    d = correct_a.astype(np.int8) - correct_b.astype(np.int8)
    p = (np.count_nonzero(d) + 1.0) / (m + 2.0)
    half = z * math.sqrt(p / m) * math.sqrt(max(0, total - m) / max(1, total - 1))
    return float(d.mean()), half


class StagedStudy(Study):
    """A :class:`~approxtvm.explore.nsga.Study` whose :meth:`points` evaluates in stages.

    Drop-in for NSGA-II and the experiments: :meth:`points` returns, in order, full-set points
    for configurations that may be on the front and stage estimates for the others; after every
    call the front of all points returned so far consists of full-set evaluations.

    Parameters
    ----------
    context
        The full evaluation context (``subset`` 0); stage contexts derive from it.
    journal, executor, on_record, fingerprint
        As for :class:`Study`.
    staging
        Stage sizes and confidence.
    budget
        Accuracy-loss budget (fraction): configurations whose loss is above it with confidence
        are dropped early.
    """

    def __init__(
        self,
        context: EvalContext,
        journal: Journal,
        executor: Executor,
        staging: StagingSettings | None = None,
        budget: float | None = None,
        on_record: Callable[[EvalRecord], None] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        if context.energy_only or context.subset:
            raise ExplorationError(
                "staged evaluation needs a full accuracy context",
                expected="a context with data (not energy_only) and subset 0",
                found=f"energy_only={context.energy_only}, subset={context.subset}",
                fix="use a plain Study for energy-only models",
            )
        super().__init__(context, journal, executor, on_record, fingerprint)
        self.staging = staging or StagingSettings()
        self.budget = budget
        data = load_context_data(context)
        self.total_samples = len(data)
        self._labels: np.ndarray | None = None if data.y is None else np.asarray(data.y)
        self.sizes = self.staging.sizes(self.total_samples, context.batch_size)
        self.stats = StagingStats()
        self._stage_studies: dict[int, Study] = {}
        self._best: dict[Configuration, Estimate] = {}
        self._times: dict[Configuration, dict[int, tuple[float, int]]] = {}
        self._last: dict[Configuration, tuple[int, EvalRecord]] = {}
        self._ref_counted: set[int] = set()
        # per-sample correctness of each configuration's latest stage, for the paired test
        self._correct: dict[Configuration, tuple[int, np.ndarray]] = {}
        self._stage_idx: dict[int, np.ndarray] = {}
        self._nested: dict[tuple[int, int], np.ndarray] = {}
        # survivors of a stage that an estimate of the pool dominates outright, waiting (defer)
        self._open: dict[Configuration, None] = {}  # insertion-ordered: runs are reproducible

    # -- stages ------------------------------------------------------------------------------

    def _stage(self, n: int) -> Study:
        """The study of stage size ``n`` (this study itself for the full set)."""
        if n >= self.total_samples:
            return self
        if n not in self._stage_studies:
            ctx = replace(self.context, subset=n)
            self._stage_studies[n] = Study(ctx, self.journal, self.executor, self._count_stage)
        return self._stage_studies[n]

    def _count_stage(self, rec: EvalRecord) -> None:
        self._count(rec)

    def full_points(self, configs: Sequence[Configuration]) -> list[Point]:
        """Full-set points of ``configs`` (no staging)."""
        return super().points(configs)

    def _priors(self, configs: list[Configuration]) -> dict[Configuration, StagePrior]:
        """Earlier-stage predictions of the configurations: their later stages run only the
        samples they add (stage sizes are whole batches, so faulty ones too; see
        :mod:`approxtvm.explore.stage_runs`)."""
        out = {}
        for c in configs:
            last = self._last.get(c)
            if last is not None and last[0] < self.total_samples:
                out[c] = StagePrior(last[0], last[1].predictions_i16)
        return out

    def _reused(self, c: Configuration, prior: StagePrior | None) -> int:
        """Samples of a stage the worker takes from ``prior`` (:func:`~approxtvm.explore.stage_runs.reusable_prefix`;
        a configuration at nominal swings and voltages draws no faults)."""
        faulty = c.noc_swing_v is not None or bool(c.sram_v)
        return reusable_prefix(None if prior is None else prior.subset, self.context.batch_size, faulty)

    def _estimate(self, configs: list[Configuration], n: int) -> list[Estimate]:
        st = self._stage(n)
        priors = self._priors(configs)
        recs = st.records(configs, priors) if st is not self else Study.records(self, configs, priors)
        if n not in self._ref_counted:  # the exact model on the stage's samples
            self._ref_counted.add(n)
            self.stats.samples_run += n
            self.stats.samples_unstaged += self.total_samples if n == self.total_samples else 0
        ref = st.reference
        truth = self._truth_at(n)
        out = []
        for c, rec in zip(configs, recs, strict=True):
            ran = n - self._reused(c, priors.get(c))
            self._times.setdefault(c, {})[n] = (rec.eval_s, ran)
            self._last[c] = (n, rec)
            self._correct[c] = (n, rec.predictions == truth)
            pt = ref.point(rec)
            lo, hi = loss_bounds(pt, n, self.total_samples, self.staging.z)
            out.append(Estimate(pt, n, lo, hi))
            self.stats.samples_run += ran
            self.stats.eval_s += rec.eval_s
            self.stats.by_stage[n] = self.stats.by_stage.get(n, 0) + 1
        return out

    def _indices(self, n: int) -> np.ndarray:
        """Stage ``n``'s samples in ascending index (the order records keep predictions in)."""
        if n not in self._stage_idx:
            self._stage_idx[n] = stratified_indices(self._labels, self.total_samples, n, self.context.seed)
        return self._stage_idx[n]

    def _truth_at(self, n: int) -> np.ndarray:
        """What a prediction on stage ``n``'s samples is scored against: the labels, or the
        exact model's predictions when the data has none."""
        truth = self._labels if self._labels is not None else self.reference.record.predictions
        return truth[self._indices(n)]

    def _within_stage(self, small: int, big: int) -> np.ndarray:
        """Positions of stage ``small``'s samples among stage ``big``'s (nested prefixes)."""
        if (small, big) not in self._nested:
            self._nested[small, big] = np.searchsorted(self._indices(big), self._indices(small))
        return self._nested[small, big]

    def _paired_gap(self, q: Configuration, e: Configuration) -> tuple[float, float]:
        """:func:`paired_loss_gap` of ``loss(e) − loss(q)`` on the samples both have run (the
        smaller of their two stages)."""
        (nq, cq), (ne, ce) = self._correct[q], self._correct[e]
        if nq < ne:
            ce = ce[self._within_stage(nq, ne)]
        elif ne < nq:
            cq = cq[self._within_stage(ne, nq)]
        return paired_loss_gap(cq, ce, self.total_samples, self.staging.z)

    def _dominated(self, c: Configuration, pool: dict[Configuration, Estimate]) -> bool:
        """Whether a configuration of ``pool`` with no more energy loses less than ``c`` with
        confidence (by either test), or — a full-set one, with a resolution ε — at most ε more
        (only full-set configurations are ε-dominators, so the approximation does not chain)."""
        e = pool[c]
        if self.budget is not None and e.loss_low > self.budget + 1e-12:
            return True
        ee = e.point.energy_per_inference_pj
        for qc, q in pool.items():
            if qc == c or q.point.energy_per_inference_pj > ee:
                continue
            # both tests are monotone in the slack: ε covers the exact (slack 0) test too
            slack = self.staging.resolution if q.samples >= self.total_samples else 0.0
            if q.loss_high < e.loss_low + slack:
                return True
            gap, half = self._paired_gap(qc, c)
            if gap > half - slack:
                return True
        return False

    # -- public ------------------------------------------------------------------------------

    def points(self, configs: Sequence[Configuration]) -> list[Point]:
        """Objective values of ``configs`` in order: full-set points for those that may reach
        the front, the last stage estimate for those dropped or deferred (see the module
        docstring)."""
        todo = list(dict.fromkeys(c for c in configs if c not in self._best))
        self.stats.configurations += len(todo)
        self.stats.samples_unstaged += len(todo) * self.total_samples
        if todo:
            for c, e in zip(todo, self._estimate(todo, self.sizes[0]), strict=True):
                self._best[c] = e
        self._race(todo, "defer" if self.staging.defer else "eager")
        self._complete_front()
        self._update_time_estimate()
        return [self._best[c].point for c in configs]

    def resolve(self) -> None:
        """Take every deferred configuration on until it is dominated with confidence or
        evaluated on the full set: afterwards the front is exact in the sense of the module
        docstring. A search calls this once at its end (:func:`~approxtvm.explore.nsga.run_nsga`)."""
        self._race([], "settle")
        self._complete_front()
        self._update_time_estimate()

    @property
    def deferred(self) -> int:
        """Configurations waiting, undecided, at a stage estimate (see :attr:`StagingSettings.defer`)."""
        return len(self._open)

    def _race(self, fresh: list[Configuration], mode: str) -> None:
        """Advance ``fresh`` and the deferred configurations through the stages, a stage at a
        time, dropping those dominated with confidence after each. Which survivors go on:

        - ``eager``: all of them;
        - ``defer``: those no estimate of the pool dominates outright; the rest wait in ``_open``
          for a better pool or :meth:`resolve`;
        - ``settle``: every undecided one eventually, the non-dominated layer among them first
          (a dominated one may then be dropped on the images it ran, against a dominator
          measured on more)."""
        active = list(dict.fromkeys([*fresh, *self._open]))
        while active:
            pool = dict(self._best)
            waiting = []
            for c in active:
                if self._best[c].samples >= self.total_samples or self._dominated(c, pool):
                    self._open.pop(c, None)
                elif mode == "defer" and self._outright_dominated(c, pool):
                    self._open[c] = None
                else:
                    waiting.append(c)
            go = waiting
            if mode == "settle":
                undecided = {c: pool[c] for c in waiting}
                go = [c for c in waiting if not self._outright_dominated(c, undecided)]
                self._open.update(dict.fromkeys(c for c in waiting if c not in go))
            step: dict[int, list[Configuration]] = {}
            for c in go:
                self._open.pop(c, None)
                step.setdefault(self.sizes[self.sizes.index(self._best[c].samples) + 1], []).append(c)
            for n, cs in sorted(step.items()):
                for c, e in zip(cs, self._estimate(cs, n), strict=True):
                    self._best[c] = e
            active = [*go, *self._open] if mode == "settle" else go

    def _outright_dominated(self, c: Configuration, pool: dict[Configuration, Estimate]) -> bool:
        """Whether some estimate of ``pool`` has no more energy and no more loss than ``c``'s,
        one of them strictly less (no confidence: the ordering heuristic of deferral)."""
        e = pool[c].point
        ee, el = e.energy_per_inference_pj, e.accuracy_loss
        for qc, q in pool.items():
            qe, ql = q.point.energy_per_inference_pj, q.point.accuracy_loss
            if qc != c and qe <= ee and ql <= el and (qe < ee or ql < el):
                return True
        return False

    def _complete_front(self) -> None:
        """Evaluate on the full set every front member that has only a stage estimate."""
        while True:
            by_key = {e.point.key: c for c, e in self._best.items()}
            front = pareto_front([e.point for e in self._best.values()], self.budget)
            partial = [by_key[p.key] for p in front if self._best[by_key[p.key]].samples < self.total_samples]
            if not partial:
                break
            for c, e in zip(partial, self._estimate(partial, self.total_samples), strict=True):
                self._best[c] = e
        self.stats.full_evaluations = sum(e.samples >= self.total_samples for e in self._best.values())

    def _update_time_estimate(self) -> None:
        """Unstaged worker seconds (see :class:`StagingStats`)."""
        rates = {c: t[n][0] / t[n][1] for c, t in self._times.items() for n in sorted(t)[1:] if t[n][1] > 0}
        if rates:
            fallback = float(sorted(rates.values())[len(rates) // 2])
        else:  # no configuration went past its first stage: the exact model's rate on the full set
            fallback = self.reference.record.eval_s / max(1, self.total_samples)
        total = 0.0
        for c in self._best:
            t = self._times.get(c, {})
            if not t:
                continue
            n0 = min(t)
            total += t[n0][0] + (self.total_samples - n0) * rates.get(c, fallback)
        self.stats.eval_s_unstaged = total

    def front(self) -> list[Point]:
        """The Pareto front of everything evaluated (full-set points only, by construction),
        deferred configurations settled first (:meth:`resolve`)."""
        self.resolve()
        return pareto_front([e.point for e in self._best.values()], self.budget)

    def estimates(self) -> dict[Configuration, Estimate]:
        """The latest estimate of every configuration seen."""
        return dict(self._best)


def make_study(
    context: EvalContext,
    journal: Journal,
    executor: Executor,
    staging: StagingSettings | None = None,
    fingerprint: str | None = None,
    budget: float | None = None,
) -> Study:
    """A :class:`StagedStudy` when ``staging`` is given and the context has data, else a
    :class:`~approxtvm.explore.nsga.Study`; ``budget`` is the accuracy-loss budget of the search
    (configurations over it with confidence are dropped after a stage)."""
    if staging is None or context.energy_only:
        return Study(context, journal, executor, fingerprint=fingerprint)
    return StagedStudy(context, journal, executor, staging, budget, fingerprint=fingerprint)
