"""The explore/experiments argument parsers."""

from __future__ import annotations

import argparse

import pytest

from approxtvm.explore.cli_explore import add_explore_parsers, cmd_experiments, cmd_explore
from approxtvm.explore.genome import DEFAULT_MULTIPLIERS


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    add_explore_parsers(ap.add_subparsers(dest="command", required=True))
    return ap


def test_explore_arguments() -> None:
    a = _parser().parse_args(
        [
            "explore",
            "digits_cnn",
            "--data",
            "digits:test",
            "--multipliers",
            "exact",
            "bam:h=4,v=0",
            "--swings",
            "nominal",
            "0.5",
            "--budget",
            "1.5",
            "--scheduler",
            "tcp://host:8786",
        ]
    )
    assert a.func is cmd_explore and a.model == "digits_cnn"
    assert a.multipliers == ["exact", "bam:h=4,v=0"] and a.swings == [None, 0.5] and a.budget == 1.5
    assert a.scheduler == "tcp://host:8786" and not a.local_cluster
    d = _parser().parse_args(["explore", "m.onnx"])
    assert d.multipliers == list(DEFAULT_MULTIPLIERS) and d.journal is None and d.workers >= 1


def test_experiments_arguments() -> None:
    a = _parser().parse_args(["experiments", "--out", "r", "--local-cluster", "--workers", "2", "--no-resnet50"])
    assert a.func is cmd_experiments and a.local_cluster and a.workers == 2 and a.no_resnet50 and not a.full


def test_staged_resolution_reaches_the_settings_and_needs_staged() -> None:
    from approxtvm.errors import ExplorationError
    from approxtvm.explore.cli_explore import _user_settings
    from approxtvm.explore.experiments.settings import ExperimentSettings

    a = _parser().parse_args(["experiments", "--staged", "--staged-resolution", "0.5"])
    s = _user_settings(a, ExperimentSettings.quick())
    assert s.staging is not None and s.staging.first_samples == 100 and s.staging.resolution == 0.005
    b = _parser().parse_args(["experiments", "--staged-resolution", "0.5"])
    with pytest.raises(ExplorationError, match="needs --staged"):
        _user_settings(b, ExperimentSettings.quick())
    c = _parser().parse_args(["experiments", "--staged", "--staged-resolution", "-1"])
    with pytest.raises(ExplorationError, match="resolution"):
        _user_settings(c, ExperimentSettings.quick())


def test_staged_eager_reaches_the_settings_and_needs_staged() -> None:
    from approxtvm.errors import ExplorationError
    from approxtvm.explore.cli_explore import _user_settings
    from approxtvm.explore.experiments.settings import ExperimentSettings

    quick = ExperimentSettings.quick()
    deferred = _user_settings(_parser().parse_args(["experiments", "--staged"]), quick)
    eager = _user_settings(_parser().parse_args(["experiments", "--staged", "--staged-eager"]), quick)
    assert deferred.staging is not None and deferred.staging.defer
    assert eager.staging is not None and not eager.staging.defer
    with pytest.raises(ExplorationError, match="needs --staged"):
        _user_settings(_parser().parse_args(["experiments", "--staged-eager"]), quick)
