"""The curvature capture against computations written here: activations and patches by explicit
loops, per-example output gradients with torch.func; coverage of a conv net with BatchNorm
and residual connections; nothing recorded off schedule; a layer that does not take part is
an error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn

from models.likelihoods import CrossEntropy
from optimizers.curvature import (
    CurvatureCapture,
    CurvatureCaptureError,
    UnsupportedLayerWarning,
    as_matrix,
    split_matrix,
)
from optimizers.kfac import KFAC
from tests.conftest import compose_config
from tests.optimizers.problems import closure_for, tiny_batches, tiny_convnet, tiny_mlp
from tests.optimizers.reference import patches_by_loop, per_example_output_gradients


def recorded_step(capture: CurvatureCapture, model: nn.Module, batch, sampled: bool):
    closure = closure_for(model, batch)
    with capture.recording():
        closure.retain_graph = sampled
        closure()
    if sampled:
        capture.backward_to_outputs(closure.outputs, closure.output_gradient(sampled=True))
    return closure


@pytest.mark.parametrize("sampled", [False, True])
def test_linear_layers_record_inputs_and_per_example_output_gradients(sampled: bool) -> None:
    model = tiny_mlp()
    flatten, first, relu, second = model
    capture = CurvatureCapture(model, model.parameters())
    batch = tiny_batches(1, batch_size=5)[0]
    x, y = batch
    torch.manual_seed(11)
    recorded_step(capture, model, batch, sampled)
    capture.check_complete()
    if sampled:  # the labels the capture's backward pass used: same seed, same draw
        torch.manual_seed(11)
        y = CrossEntropy().sample(model(x))

    layer_one, layer_two = capture.layers
    assert [layer.name for layer in capture.layers] == ["1", "3"]
    ones = torch.ones(5, 1, dtype=torch.float64)
    with torch.no_grad():
        s1 = first(flatten(x))
        hidden = relu(s1)
    torch.testing.assert_close(layer_one.activations(), torch.cat([flatten(x), ones], 1)[:, None])
    torch.testing.assert_close(layer_two.activations(), torch.cat([hidden, ones], 1)[:, None])

    g1 = per_example_output_gradients(nn.Sequential(relu, second), s1, y)
    g2 = per_example_output_gradients(nn.Identity(), second(hidden), y)
    torch.testing.assert_close(layer_one.output_gradients(), g1[:, None])
    torch.testing.assert_close(layer_two.output_gradients(), g2[:, None])


def test_sampled_backward_leaves_the_true_label_gradients_in_grad() -> None:
    model = tiny_mlp()
    capture = CurvatureCapture(model, model.parameters())
    batch = tiny_batches(1, batch_size=7)[0]
    closure = closure_for(model, batch)
    with capture.recording():
        closure.retain_graph = True
        closure()
    true_grads = [p.grad.clone() for p in model.parameters()]
    capture.backward_to_outputs(closure.outputs, closure.output_gradient(sampled=True))
    for p, expected in zip(model.parameters(), true_grads, strict=True):
        assert torch.equal(p.grad, expected)


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "bias"),
    [(1, 1, 1, True), (2, 0, 1, False), (2, 2, 2, True)],
)
def test_conv_patches_and_output_gradients_match_a_loop_over_positions(
    stride: int, padding: int, dilation: int, bias: bool
) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=padding, dilation=dilation, bias=bias)
    with torch.no_grad():
        positions = conv(torch.zeros(1, 2, 7, 7)).shape[2:].numel()
    # an in-place ReLU right after the hooked layer: the gradient must still be dLoss/ds
    model = nn.Sequential(
        conv, nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(3 * positions, 4)
    ).double()
    x = torch.randn(3, 2, 7, 7, dtype=torch.float64)
    y = torch.tensor([0, 3, 1])
    capture = CurvatureCapture(model, model.parameters())
    recorded_step(capture, model, (x, y), sampled=False)
    layer = capture.layers[0]
    torch.testing.assert_close(layer.activations(), patches_by_loop(x, conv))

    with torch.no_grad():
        s = conv(x)
    head = nn.Sequential(nn.ReLU(), *model[2:])  # the same function, without the in-place op
    g = per_example_output_gradients(head, s, y)  # (N, C_out, H, W)
    by_position = torch.stack(
        [g[:, :, i, j] for i in range(s.shape[2]) for j in range(s.shape[3])], dim=1
    )
    torch.testing.assert_close(layer.output_gradients(), by_position)


def test_linear_on_sequences_reads_extra_dimensions_as_positions() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(3, 2).double()
    model = nn.Sequential(linear, nn.Flatten(), nn.Linear(8, 4)).double()
    x = torch.randn(5, 4, 3, dtype=torch.float64)  # 5 examples, 4 positions
    capture = CurvatureCapture(model, model.parameters(), keep_outputs=True)
    recorded_step(capture, model, (x, torch.zeros(5, dtype=torch.long)), sampled=False)
    layer = capture.layers[0]
    ones = torch.ones(5, 4, 1, dtype=torch.float64)
    torch.testing.assert_close(layer.activations(), torch.cat([x, ones], dim=2))
    torch.testing.assert_close(layer.pre_activations(), linear(x).detach())
    assert layer.output_gradients().shape == (5, 4, 2)


def test_gradient_matrix_round_trip() -> None:
    weight, bias = torch.randn(3, 2, 2, 2), torch.randn(3)
    matrix = as_matrix(weight, bias)
    assert matrix.shape == (3, 9)
    assert torch.equal(matrix[:, -1], bias)
    back_weight, back_bias = split_matrix(matrix, weight.shape, has_bias=True)
    assert torch.equal(back_weight, weight) and torch.equal(back_bias, bias)


class BasicBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = (
            nn.Sequential()
            if stride == 1 and channels_in == channels_out
            else nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False))
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """conv-BN-ReLU stem, an identity block, a strided block with a 1x1 shortcut, pooling and
    a classifier with an in-place ReLU between two Linear layers (as VGG's)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.blocks = nn.Sequential(BasicBlock(4, 4, 1), BasicBlock(4, 8, 2))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 6),
            nn.ReLU(inplace=True),
            nn.Linear(6, 5),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


def assert_every_layer_records(
    model: nn.Module,
    batch: tuple[Tensor, Tensor],
    layers: int,
    batch_norms: int,
    take_step: bool = True,
) -> None:
    """KFAC on `model` hooks every Conv2d and Linear (`layers` of them), lists the BatchNorm
    layers once at start-up, and on a step every hooked layer records activations and
    non-zero output gradients (a layer whose hooks did not fire would raise)."""
    with pytest.warns(UnsupportedLayerWarning, match=rf"BatchNorm2d x{batch_norms} "):
        optimizer = KFAC(model.parameters(), model=model, warm_start=False)
    capture = optimizer.capture
    expected = [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [layer.name for layer in capture.layers] == expected
    assert len(expected) == layers
    recorded_step(capture, model, batch, sampled=True)
    capture.check_complete()
    for layer in capture.layers:
        assert layer.activations().shape[0] == batch[0].shape[0]
        assert layer.output_gradients().abs().sum() > 0, layer.name
    if take_step:  # the real step checks the same, then inverts and steps
        optimizer.step(closure_for(model, batch))


def test_hooks_fire_on_every_registered_layer_of_a_residual_conv_net() -> None:
    batch = (torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 4]))
    # stem, 2 x 2 block convs, the 1x1 shortcut, 2 Linear; BatchNorm after every conv but one
    assert_every_layer_records(SmallResNet(), batch, layers=8, batch_norms=5)


def test_nothing_is_recorded_off_schedule_in_eval_mode_or_without_grad() -> None:
    model = tiny_mlp()
    capture = CurvatureCapture(model, model.parameters())
    batch = tiny_batches(1)[0]
    closure_for(model, batch)()  # no recording open
    assert all(layer.inputs is None and layer.output_grad is None for layer in capture.layers)
    with capture.recording():
        model.eval()
        closure_for(model, batch)()
        model.train()
        with torch.no_grad():
            model(batch[0])
    assert all(layer.inputs is None and layer.output_grad is None for layer in capture.layers)
    with pytest.raises(CurvatureCaptureError, match=r"had no forward pass.*1, 3"):
        capture.check_complete()


class WithUnusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(25, 4)
        self.unused = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.used(x.flatten(1))


def test_a_registered_layer_that_does_not_run_is_an_error() -> None:
    model = WithUnusedLayer().double()
    optimizer = KFAC(model.parameters(), model=model, warm_start=False)
    with pytest.raises(CurvatureCaptureError, match=r"no forward pass.*unused"):
        optimizer.step(closure_for(model, tiny_batches(1)[0]))


def test_a_layer_run_twice_in_one_forward_is_an_error() -> None:
    layer = nn.Linear(4, 4).double()
    model = nn.Sequential(nn.Flatten(), nn.Linear(25, 4), layer, layer).double()
    capture = CurvatureCapture(model, model.parameters())
    with capture.recording(), pytest.raises(CurvatureCaptureError, match="more than once"):
        model(tiny_batches(1)[0][0])


def test_unsupported_and_partly_frozen_layers_are_reported_frozen_ones_ignored() -> None:
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, groups=2),
        nn.LayerNorm(4),
        nn.Linear(4, 4),
        nn.Linear(4, 4),
        nn.Embedding(3, 4),
    )
    model[3].bias.requires_grad_(False)
    for p in model[4].parameters():
        p.requires_grad_(False)
    capture = CurvatureCapture(model, model.parameters())
    assert [layer.name for layer in capture.layers] == ["2"]
    assert capture.unsupported == [
        ("0", "Conv2d", "grouped convolution (groups=2)"),
        ("1", "LayerNorm", "no Kronecker-factored rule for this layer type"),
        ("3", "Linear", "only some of its parameters are trained"),
    ]
    with pytest.warns(UnsupportedLayerWarning) as warned:
        capture.warn_unsupported("KFAC")
    assert len(warned) == 1
    assert "Conv2d x1 (grouped convolution (groups=2)); LayerNorm x1" in str(warned[0].message)


def test_remove_detaches_the_hooks() -> None:
    model = tiny_mlp()
    capture = CurvatureCapture(model, model.parameters())
    capture.remove()
    with capture.recording():
        closure_for(model, tiny_batches(1)[0])()
    assert all(layer.inputs is None for layer in capture.layers)


def test_pre_activations_need_keep_outputs() -> None:
    model = tiny_convnet()
    capture = CurvatureCapture(model, model.parameters())
    recorded_step(capture, model, tiny_batches(1)[0], sampled=False)
    with pytest.raises(RuntimeError, match="keep_outputs"):
        capture.layers[0].pre_activations()


@pytest.mark.parametrize(
    ("model_name", "dataset", "layers", "batch_norms", "take_step"),
    [
        # stem + 3 x 5 x 2 block convs + FC; option-A shortcuts have no conv
        ("resnet32", "cifar10", 32, 31, True),
        # 13 convs + 3 Linear; no step: inverting its 4609 x 4609 factors takes seconds
        ("vgg16_bn", "cifar100", 16, 13, False),
    ],
)
def test_hooks_fire_on_every_layer_of_the_papers_cnns(
    model_name: str, dataset: str, layers: int, batch_norms: int, take_step: bool
) -> None:
    cfg = compose_config(f"model={model_name}", f"dataset={dataset}")
    torch.manual_seed(0)
    model = instantiate(
        cfg.model,
        input_shape=list(cfg.dataset.input_shape),
        num_classes=int(cfg.dataset.num_classes),
    )
    batch = (torch.randn(2, *cfg.dataset.input_shape), torch.tensor([0, 1]))
    assert_every_layer_records(model, batch, layers, batch_norms, take_step)
