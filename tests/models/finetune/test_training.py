"""Fine-tuning runs: determinism, resume from a checkpoint, gradients, errors."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from approxtvm.errors import PolicyError, TrainingError, UnsupportedOperatorError
from approxtvm.models import get_model, load_dataset
from approxtvm.models.finetune import FinetuneOptions, build_net, finetune, to_qdq
from approxtvm.models.finetune.autograd import LayerKernel, approx_layer
from approxtvm.runtime.kernels import KernelCache
from approxtvm.runtime.multipliers import resolve_multiplier
from approxtvm.targets.vacc.config import ApproxPolicy

OPTS = FinetuneOptions(epochs=2, max_batches_per_epoch=2, seed=3)


def _run(tmp, epochs=2, seed=3):
    train = load_dataset("digits:train")
    opts = FinetuneOptions(epochs=epochs, max_batches_per_epoch=2, seed=seed)
    return finetune(get_model("digits_cnn"), train, multiplier="drum:k=4", options=opts, out_dir=tmp, progress=False)


def test_same_seed_same_weights_and_resume_continues_exactly(tmp_path):
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b")
    assert (tmp_path / "a/model.onnx").read_bytes() == (tmp_path / "b/model.onnx").read_bytes()
    c = _run(tmp_path / "c", seed=4)
    assert (tmp_path / "c/model.onnx").read_bytes() != (tmp_path / "a/model.onnx").read_bytes()
    # interrupted after epoch 1, resumed to epoch 2 from checkpoints/last.pt
    _run(tmp_path / "r", epochs=1)
    r = _run(tmp_path / "r", epochs=2)
    assert (tmp_path / "r/model.onnx").read_bytes() == (tmp_path / "a/model.onnx").read_bytes()
    assert [h.loss for h in r.history] == [h.loss for h in a.history] == [h.loss for h in b.history]
    assert len(c.history) == 2


def test_resume_with_other_options_is_refused(tmp_path):
    _run(tmp_path, epochs=1)
    with pytest.raises(TrainingError, match="does not belong"):
        _run(tmp_path, epochs=2, seed=9)


@pytest.mark.parametrize("op", ["conv2d", "dense"])
def test_fd_gradient_of_the_exact_table_is_the_exact_product_gradient(op):
    # central differences of M(a, b) = a·b are exact: ∂/∂a = b, ∂/∂b = a (one-sided at the edges too)
    rng = np.random.default_rng(0)
    m = resolve_multiplier("exact")
    shape_x, shape_w = ((2, 3, 6, 6), (4, 3, 3, 3)) if op == "conv2d" else ((5, 7), (3, 7))
    grads = {}
    for mode in ("ste", "fd"):
        x = torch.tensor(rng.integers(0, 256, shape_x).astype(np.float32), requires_grad=True)
        w = torch.tensor(rng.integers(0, 256, shape_w).astype(np.float32), requires_grad=True)
        rng = np.random.default_rng(0)  # same operands for both modes
        k = LayerKernel(op, m, KernelCache(), grad=mode)
        acc = approx_layer(x, w, 7, torch.full((shape_w[0],), 5.0), k)
        (acc.to(torch.float32) * torch.linspace(-1, 1, acc.numel()).reshape(acc.shape)).sum().backward()
        grads[mode] = (x.grad.numpy(), w.grad.numpy())
    np.testing.assert_allclose(grads["fd"][0], grads["ste"][0], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(grads["fd"][1], grads["ste"][1], rtol=1e-5, atol=1e-3)


def test_forward_accumulators_match_a_plain_integer_convolution():
    # exact multiplier: acc = Σ (x − z_x)(w − z_w) over the zero-point-padded input (numpy reference)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 3, 5, 5)).astype(np.int64)
    w = rng.integers(0, 256, (4, 3, 3, 3)).astype(np.int64)
    zx, zw = 9, 200
    k = LayerKernel("conv2d", resolve_multiplier("exact"), KernelCache(), strides=(2, 2))
    got = approx_layer(
        torch.tensor(x, dtype=torch.float32), torch.tensor(w, dtype=torch.float32), zx, torch.full((4,), float(zw)), k
    ).numpy()
    ref = np.zeros((2, 4, 2, 2), np.int64)
    for p in range(2):
        for q in range(2):
            patch = x[:, :, 2 * p : 2 * p + 3, 2 * q : 2 * q + 3] - zx
            ref[:, :, p, q] = np.einsum("ncrs,kcrs->nk", patch, w - zw)
    np.testing.assert_array_equal(got, ref)


def test_policy_xor_multiplier():
    train = load_dataset("digits:train")
    with pytest.raises(PolicyError, match="exactly one"):
        finetune(get_model("digits_cnn"), train, progress=False)
    with pytest.raises(PolicyError, match="exactly one"):
        finetune(get_model("digits_cnn"), train, policy=ApproxPolicy.exact(), multiplier="exact", progress=False)


def test_policy_rule_for_a_missing_layer_is_an_error():
    qdq = to_qdq(get_model("digits_cnn"), load_dataset("digits:train").x[:64])
    with pytest.raises(PolicyError, match="match no layer"):
        build_net(qdq, ApproxPolicy.per_layer({"conv9": "drum:k=4"}))


def test_unsupported_host_operator_is_listed():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = onnx.numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc"), helper.make_node("Sigmoid", ["h"], ["y"], name="sig")],
        "g",
        [x],
        [y],
        [w],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    qdq = to_qdq(model, np.random.default_rng(0).random((16, 4), dtype=np.float32))
    with pytest.raises(UnsupportedOperatorError, match="Sigmoid"):
        build_net(qdq, ApproxPolicy.exact())


def test_missing_torch_is_a_clear_error(monkeypatch):
    from approxtvm.models.finetune._torch import require_torch

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(TrainingError, match="train"):
        require_torch()


def test_torch_module_input(tmp_path):
    train = load_dataset("digits:train")
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(256, 10)
    )
    res = finetune(
        module,
        train,
        multiplier="drum:k=4",
        options=FinetuneOptions(epochs=1, max_batches_per_epoch=2),
        out_dir=tmp_path,
        progress=False,
    )
    assert len(res.net.graph.layers) == 2 and (tmp_path / "model.onnx").is_file()
