"""Every model of conf/model/: its parameter count against an independent count from the
architecture in docs/problems.md, its layers (plain Linear/Conv2d modules that curvature hooks can
see), its output shape and its initialisation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from torch import nn

from models.autoencoder import DeepAutoencoder
from models.mlp import MLP
from models.task import Task
from tests.conftest import CONF_DIR, compose_config

# The papers' architectures (docs/problems.md), written out independently of the model code.
AE_LAYERS = {
    "mnist_ae": "784-1000-500-250-30-250-500-1000-784",
    "faces_ae": "625-2000-1000-500-30-500-1000-2000-625",
    "curves_ae": "784-400-200-100-50-25-6-25-50-100-200-400-784",
}
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def dense_count(sizes: list[int]) -> int:
    """Weights and biases of a chain of Linear layers."""
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(sizes))


def resnet_count(blocks: int, num_classes: int) -> int:
    count = 3 * 16 * 9 + 2 * 16  # stem conv (no bias) + BN
    width = 16
    for stage_width in (16, 32, 64):
        for _ in range(blocks):
            count += width * stage_width * 9 + stage_width * stage_width * 9  # two convs
            count += 2 * (2 * stage_width)  # two BNs; option-A shortcuts have no parameters
            width = stage_width
    return count + 64 * num_classes + num_classes


def vgg_count(num_classes: int) -> int:
    count, channels = 0, 3
    for entry in VGG16:
        if entry != "M":
            count += channels * entry * 9 + entry + 2 * entry  # conv with bias + BN
            channels = entry
    return count + dense_count([512, 4096, 4096, num_classes])


# model -> (data set it is built for, the independent count, Linear/Conv2d layers)
EXPECTED = {
    "mnist_ae": ("mnist", dense_count([int(s) for s in AE_LAYERS["mnist_ae"].split("-")]), 8),
    "faces_ae": ("faces", dense_count([int(s) for s in AE_LAYERS["faces_ae"].split("-")]), 8),
    "curves_ae": ("curves", dense_count([int(s) for s in AE_LAYERS["curves_ae"].split("-")]), 12),
    "resnet32": ("cifar10", resnet_count(5, 10), 32),  # 31 convs + the classifier
    "vgg16_bn": ("cifar100", vgg_count(100), 16),  # 13 convs + 3 Linear
    "fmnist_2c2d": (
        "fashion_mnist",
        25 * 32 + 32 + 32 * 64 * 25 + 64 + dense_count([3136, 1024, 10]),
        4,
    ),
    "mlp": ("fashion_mnist", dense_count([784, 256, 128, 10]), 3),
}


def build_model(model: str, dataset: str) -> nn.Module:
    """The model as runners.build makes it: the config's arguments plus the data set's shape."""
    cfg = compose_config(f"model={model}", f"dataset={dataset}")
    supplied = {"input_shape": list(cfg.dataset.input_shape)}
    model_class = get_class(cfg.model._target_)
    if model_class.TASK is Task.classification:
        supplied["num_classes"] = int(cfg.dataset.num_classes)
    return instantiate(cfg.model, **supplied)


def test_every_model_config_is_covered() -> None:
    assert sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("model_name", sorted(EXPECTED))
def test_parameter_count_matches_the_architecture(model_name: str) -> None:
    dataset, expected, weight_layers = EXPECTED[model_name]
    model = build_model(model_name, dataset)
    count = sum(p.numel() for p in model.parameters())
    print(f"{model_name} on {dataset}: {count:,} parameters ({count / 1e6:.2f} M)")
    assert count == expected
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert len(layers) == weight_layers
    # every parameter belongs to a Linear, Conv2d or BatchNorm module: nothing hidden
    owned = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.BatchNorm2d))
        for p in m.parameters(recurse=False)
    )
    assert owned == count


def test_published_sizes() -> None:
    """The sizes the papers quote: ResNet-32 0.46 M (He et al. 2016), MNIST AE about 2.8 M."""
    assert round(EXPECTED["resnet32"][1] / 1e6, 2) == 0.46
    assert round(EXPECTED["mnist_ae"][1] / 1e6, 1) == 2.8


@pytest.mark.parametrize(
    ("model_name", "dataset", "outputs"),
    [
        ("mnist_ae", "mnist", 784),
        ("faces_ae", "faces", 625),
        ("curves_ae", "curves", 784),
        ("resnet32", "cifar10", 10),
        ("resnet32", "cifar100", 100),
        ("resnet32", "fashion_mnist", 10),  # any image size: global average pooling
        ("vgg16_bn", "cifar100", 100),
        ("fmnist_2c2d", "fashion_mnist", 10),
        ("fmnist_2c2d", "cifar10", 10),
        ("mlp", "cifar10", 10),
    ],
)
def test_output_shape_follows_the_data_set(model_name: str, dataset: str, outputs: int) -> None:
    model = build_model(model_name, dataset)
    shape = list(compose_config(f"dataset={dataset}").dataset.input_shape)
    assert model(torch.rand(2, *shape)).shape == (2, outputs)


def test_vgg_refuses_inputs_too_small_for_its_pools() -> None:
    with pytest.raises(InstantiationException, match=r"input \[1, 28, 28\] is too small for 5"):
        build_model("vgg16_bn", "fashion_mnist")


def test_resnet_blocks_and_zero_padding_shortcuts() -> None:
    from models.resnet import BasicBlock, ZeroPadShortcut

    model = build_model("resnet32", "cifar10")
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 15
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    shortcuts = [m for m in model.modules() if isinstance(m, ZeroPadShortcut)]
    assert len(shortcuts) == 2  # at the start of stages 2 and 3 only
    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, stride=2)(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_initialisation_follows_the_reference_code() -> None:
    torch.manual_seed(0)
    resnet = build_model("resnet32", "cifar10")
    last_conv = resnet.stages[2][4].conv2  # 64 x 64 x 3 x 3
    fan_in = 64 * 9
    assert last_conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    assert resnet.fc.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.15)

    vgg = build_model("vgg16_bn", "cifar100")
    convs = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
    for conv in convs[-3:]:  # 512 output channels: N(0, sqrt(2 / (9 * 512)))
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.05)
    assert all(conv.bias.abs().max() == 0 for conv in convs)
    first_linear = vgg.classifier[1]  # PyTorch's default U(-1/sqrt(512), 1/sqrt(512))
    bound = 1 / math.sqrt(512)
    assert first_linear.weight.abs().max() <= bound
    assert first_linear.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)

    cnn = build_model("fmnist_2c2d", "fashion_mnist")
    dense = cnn.layers[7]  # 3136 -> 1024: truncated normal, std 0.05, cut at 2 std
    assert dense.weight.abs().max() <= 0.1
    truncated_std = 0.05 * 0.8796  # std of a normal truncated at +-2 standard deviations
    assert dense.weight.std().item() == pytest.approx(truncated_std, rel=0.02)
    assert all((m.bias == 0.05).all() for m in cnn.layers if isinstance(m, nn.Linear))


def test_mnist_autoencoder_architecture() -> None:
    model = DeepAutoencoder([1, 28, 28], [1000, 500, 250, 30])
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.ReLU))]
    sizes = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == list(itertools.pairwise(sizes))
    # ReLU after every hidden layer; the code layer (30) and the output layer are linear
    kinds = ["L" if isinstance(m, nn.Linear) else "R" for m in layers]
    assert "".join(kinds) == "LRLRLRLLRLRLRL"
    count = sum(p.numel() for p in model.parameters())
    print(f"mnist_ae parameters: {count:,}")
    assert count == dense_count(sizes) == 2_837_314
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 784)
    assert model.TASK is Task.reconstruction


def test_mlp_classifier() -> None:
    model = MLP([1, 28, 28], 10, [256, 128])
    count = sum(p.numel() for p in model.parameters())
    print(f"mlp parameters: {count:,}")
    assert count == dense_count([784, 256, 128, 10])
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 10)
    assert model.TASK is Task.classification
